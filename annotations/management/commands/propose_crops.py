"""``python manage.py propose_crops --dataset NAME [--json] [--masks DIR] [--worker]``.

Proposes both adrenal crop boxes for every scan of the dataset as a ``propose_crops`` Job, run in this
process (``--worker``: queued on the cpu queue and waited for). With ``--masks`` the boxes come from
TotalSegmentator masks where a scan has some (a folder per scan named by series UID, NIfTI stem or
patient id holding ``adrenal_gland_{left,right}.nii.gz``, or ``<name>.nii.gz`` multilabel 8 = right,
9 = left; or, for a one-scan dataset, DIR itself). ``--json`` prints
``{"series": [{"id", "series_uid", "status", "boxes": {"R": {"lps_min", "lps_max"}, "L": {...}}}]}``.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import run_now, wait
from annotations.models import Dataset
from annotations.tasks import propose_crops, start_proposals


class Command(BaseCommand):
    help = "Propose crop boxes for both adrenal glands of every scan of a dataset (never over confirmed boxes)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True, help="dataset name")
        parser.add_argument("--json", action="store_true", help="print the boxes as JSON")
        parser.add_argument("--masks", default=None, help="folder or file of TotalSegmentator adrenal masks")
        parser.add_argument("--worker", action="store_true", help="queue the job for a cpu worker and wait")

    def handle(self, *args, **opts) -> None:
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {opts['dataset']!r}")
        masks = opts["masks"]
        if masks and not Path(masks).exists():
            raise CommandError(f"masks {masks} do not exist")
        masks = str(Path(masks).resolve()) if masks else None
        with transaction.atomic():
            job = start_proposals(dataset=dataset, masks=masks, send=opts["worker"])
        job = wait(job) if opts["worker"] else run_now(propose_crops, job)
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"proposal job #{job.pk} {job.status}: {job.message}")
        doc = {"series": job.result.get("series", [])}
        if opts["json"]:
            self.stdout.write(json.dumps(doc, indent=2))
            return
        for s in doc["series"]:
            extra = s.get("error") or s.get("reason") or ", ".join(
                f"{side} {[round(v, 1) for v in b['lps_min']]}..{[round(v, 1) for v in b['lps_max']]}"
                for side, b in s["boxes"].items())
            self.stdout.write(f"#{s['id']} {s['series_uid']}: {s['status']} {extra}")
