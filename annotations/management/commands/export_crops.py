"""``python manage.py export_crops --dataset NAME [--format csv|json|original] [--output FILE]``.

``csv``: every box in LPS mm with voxel range, status, source, version, who and when, and its side's findings
(gland seen / not visualised / absent, lesion marker centre and diameter in mm, comment; a side with findings
but no box is a row too; series "not covered" as rows without a side); ``json``: the same per series;
``original``: the original study's crop table (boxes only). The ``csv`` table's text cells that a spreadsheet would
read as a formula (``=``, ``+``, ``-``, ``@`` first) start with ``'``; ``original`` is written verbatim, for code.
"""
from __future__ import annotations

import io
import json

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Dataset, Series
from annotations.services.crop_tables import (
    MM_COLUMNS,
    ORIGINAL_COLUMNS,
    mm_json,
    mm_rows,
    original_rows,
    write_csv,
)
from inference.ml.atomic import write_text


class Command(BaseCommand):
    help = "Export a dataset's crop boxes in mm (CSV/JSON) or as the original study's crop table."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True, help="dataset name")
        parser.add_argument("--format", choices=["csv", "json", "original"], default="csv")
        parser.add_argument("--output", default=None, help="file to write (default: standard output)")

    def handle(self, *args, **opts) -> None:
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {opts['dataset']!r}")
        qs = Series.objects.filter(is_scan=True, study__patient__dataset=dataset)
        out = io.StringIO() if opts["output"] else self.stdout
        if opts["format"] == "json":
            out.write(json.dumps(mm_json(qs), indent=2) + "\n")
        elif opts["format"] == "original":
            write_csv(original_rows(qs), ORIGINAL_COLUMNS, out, spreadsheet=False)
        else:
            write_csv(mm_rows(qs), MM_COLUMNS, out)
        if opts["output"]:
            # written whole or not at all: an earlier export at that path is never left half overwritten
            try:
                write_text(opts["output"], out.getvalue())
            except OSError as exc:
                raise CommandError(f"cannot write {opts['output']}: {exc.strerror or exc}") from exc
