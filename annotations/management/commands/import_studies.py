"""``python manage.py import_studies PATH --dataset NAME [--labels CSV] [--json] [--sync | --no-wait]``.

By default the import is a Job on the ``cpu`` queue and the command waits for it, printing its progress
(a cpu worker must be running). ``--sync`` runs the same Job in this process (no worker needed).
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import run_now, wait
from annotations.models import Dataset, ImportReport
from annotations.services.importer import LabelsCsvInvalid, read_labels_csv, report_json
from annotations.tasks import import_studies, start_import


class Command(BaseCommand):
    help = "Import a folder of DICOM series (any layout) or NIfTI files into a dataset, as a cpu-queue job."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="folder (any layout; {normal,abnormal}/<patient>/... gives labels) or file")
        parser.add_argument("--dataset", required=True, help="dataset name (created when missing)")
        parser.add_argument("--labels", default=None, help="CSV: label plus patient, study_uid or series_uid")
        parser.add_argument("--series-rule", choices=["all", "thinnest"], default=None,
                            help="for a new dataset (or to change it): every CT series, or the thinnest per study")
        parser.add_argument("--json", action="store_true", help="print the import as JSON")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--sync", action="store_true", help="run the job in this process instead of a worker")
        mode.add_argument("--no-wait", action="store_true", help="queue the job and return at once")

    def handle(self, *args, **opts) -> None:
        path = Path(opts["path"]).resolve()
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        labels = Path(opts["labels"]).resolve() if opts["labels"] else None
        if labels and not labels.is_file():
            raise CommandError(f"labels CSV {labels} is a folder, not a file" if labels.is_dir()
                               else f"labels CSV {labels} does not exist")
        if labels:
            try:
                read_labels_csv(labels)
            except LabelsCsvInvalid as exc:
                raise CommandError(str(exc)) from None
        dataset, created = Dataset.objects.get_or_create(name=opts["dataset"])
        if opts["series_rule"] and dataset.series_rule != opts["series_rule"]:
            dataset.series_rule = opts["series_rule"]
            dataset.save(update_fields=["series_rule"])
        log = self.stderr if opts["json"] else self.stdout
        if created:
            log.write(f"created dataset {dataset.name!r}\n")
        with transaction.atomic():
            job = start_import(dataset, str(path), labels_csv=str(labels) if labels else None, send=not opts["sync"])
        if opts["sync"]:
            run_now(import_studies, job)
        elif opts["no_wait"]:
            if opts["json"]:  # what was asked for is JSON: the queued job, to follow (GET /api/jobs/<id>/)
                self.stdout.write(json.dumps({"dataset": dataset.name, "job": job.pk, "status": job.status}))
            else:
                log.write(f"queued import job #{job.pk}\n")
            return
        wait(job, on_change=lambda j: log.write(f"[{j.status}] {j.progress:5.1f}% {j.message}\n"))
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"import job #{job.pk} {job.status}: {job.message}")
        report = ImportReport.objects.get(job=job)
        doc = report_json(report)
        if opts["json"]:
            self.stdout.write(json.dumps(doc, indent=2))
            return
        self.stdout.write(f"import #{report.pk} into {dataset.name}: {len(doc['series'])} series imported, "
                          f"{len(doc['skipped'])} skipped, {len(doc['failed'])} failed")
        for kind in ("skipped", "failed"):
            for item in doc[kind]:
                self.stdout.write(f"  {kind}: {item['path']}: {item['reason']}")
