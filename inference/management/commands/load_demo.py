"""``python manage.py load_demo``: into a database without datasets, the synthetic demo cohort as dataset
"Demo" (its members: the demo accounts), then the demo pipeline job (proposals, 2.5D images, a ``fast`` run
that is evaluated and promoted)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from adrenal_site.jobs.runner import run_now
from annotations.models import Dataset
from annotations.tasks import import_studies, start_import
from inference.services.demo import DEMO_DATASET, DEMO_USERS, demo_patients, ensure_cohort, labels_csv
from inference.tasks import start_demo_pipeline


class Command(BaseCommand):
    help = "Load the synthetic demo dataset into an empty database and queue its pipeline."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--check", action="store_true",
                            help="only check ADRENAL_DEMO_PATIENTS (setup_site --demo does, before making accounts)")

    def handle(self, *args, check: bool = False, **options) -> None:
        if check:
            try:
                demo_patients()
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            return
        if Dataset.objects.exists():
            self.stdout.write("demo data: the database already has datasets; loading nothing")
            return
        try:
            patients = demo_patients()
        except ValueError as exc:  # before anything is stored: make run stops here with the reason
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"demo data: the synthetic cohort ({patients} patients) ...")
        out, generated = ensure_cohort()
        self.stdout.write(f"demo data: {'generated' if generated else 'found'} {out}")
        dataset = Dataset.objects.create(name=DEMO_DATASET, description="Synthetic demo cohort (generated)")
        dataset.members.add(*get_user_model().objects.filter(username__in=DEMO_USERS))
        # the pipeline proposes boxes itself, right before building images from them
        # labels: the folders say normal/abnormal; labels.csv adds which gland is abnormal (per-gland supervision)
        job = run_now(import_studies, start_import(dataset, str(out), labels_csv=str(labels_csv(out)), source=str(out),
                                                   propose=False, send=False))
        with transaction.atomic():
            pipeline = start_demo_pipeline(dataset)
        self.stdout.write(f"demo data: imported {out} as dataset {DEMO_DATASET!r} ({job.message}; ground truth: "
                          f"{out}/ground_truth.csv); job #{pipeline.pk} proposes boxes, builds 2.5D images and trains a "
                          f"'fast' model in the background (evaluated and promoted when it finishes)")
