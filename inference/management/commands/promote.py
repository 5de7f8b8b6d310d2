"""``python manage.py promote RUN``: make a finished, evaluated run the model new studies are judged with."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from inference.models import TrainingRun
from inference.services.runs import promote


class Command(BaseCommand):
    help = "Promote a finished training run: new studies (API, predict, DICOM node) are judged with it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("run", type=int, help="TrainingRun id")

    def handle(self, *args, **opts) -> None:
        run = TrainingRun.objects.filter(pk=opts["run"]).first()
        if run is None:
            raise CommandError(f"no training run {opts['run']}")
        try:
            promote(run)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"run {run.pk} ({run.preset}, dataset {run.dataset.name}) is the promoted model")
