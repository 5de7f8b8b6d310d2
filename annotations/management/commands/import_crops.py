"""``python manage.py import_crops CSV [--dataset NAME] [--status confirmed|proposed] [--json]``.

Reads the original study's crop table (see ``annotations.crop_tables`` for the voxel convention) into boxes.
A row that does not match one scan, or has bad numbers, is reported and the other rows are still imported.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Dataset, Series
from annotations.services.crop_tables import import_original


class Command(BaseCommand):
    help = "Import the original study's crop table (filename_nii, adrenal_LR, crop_{x,y,z}_{min,max})."

    def add_arguments(self, parser) -> None:
        parser.add_argument("csv", help="crop table CSV")
        parser.add_argument("--dataset", default=None, help="only match scans of this dataset")
        parser.add_argument("--status", choices=["confirmed", "proposed"], default="confirmed")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **opts) -> None:
        path = Path(opts["csv"])
        if not path.is_file():
            raise CommandError(f"{path} is a folder, not a crop table" if path.is_dir() else f"{path} does not exist")
        qs = Series.objects.filter(is_scan=True, volume__isnull=False)
        if opts["dataset"]:
            dataset = Dataset.objects.filter(name=opts["dataset"]).first()
            if dataset is None:
                raise CommandError(f"no dataset named {opts['dataset']!r}")
            qs = qs.filter(study__patient__dataset=dataset)
        try:
            result = import_original(path, qs, status=opts["status"])
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text (save the crop table as CSV UTF-8)") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(result.to_dict(), indent=2))
            return
        unchanged = sum(1 for r in result.imported if r.get("unchanged"))
        self.stdout.write(f"{len(result.imported) - unchanged} box(es) imported, {unchanged} already as the table "
                          f"says, {len(result.failed)} row(s) failed")
        for f in result.failed:
            self.stdout.write(f"  row {f['row']} {f['filename_nii']}: {f['reason']}")
