"""``manage.py train --dataset NAME --preset fast|lite|paper|tiny [--set KEY=JSON ...] [--wait] [--json]``: start a
training run. ``--set`` overrides a setting (``epochs=3``, ``mil.top_k=1``, ``image={"side_px": 96}``); one the
preset does not allow or the run would not honour stops the command with the message naming its field
(``inference.ml.presets.ConfigError``), and nothing is created."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import wait
from annotations.models import Dataset
from inference.ml.presets import PRESETS
from inference.services.runs import run_summary
from inference.tasks import start_run


class Command(BaseCommand):
    help = "Start a training run on a dataset's 2.5D images (folds run on Celery workers)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--preset", default="fast", choices=list(PRESETS))
        parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                            help="override a configuration value (JSON, else text), e.g. --set epochs=2 "
                                 "--set mil.top_k=1; see inference/ml/presets.py SETTINGS for keys and ranges")
        parser.add_argument("--wait", action="store_true", help="wait until the run finishes")
        parser.add_argument("--timeout", type=float, default=24 * 3600)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts) -> None:
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {opts['dataset']!r}")
        overrides = {}
        for item in opts["set"]:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise CommandError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=3")
            key = key.strip()
            try:
                overrides[key] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key] = value
        try:
            run = start_run(dataset, opts["preset"], overrides=overrides)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not opts["json"]:
            self.stderr.write(f"run {run.pk} queued ({opts['preset']}, {len(run.split.folds)} folds)")
        if opts["wait"]:
            def show(job: Job) -> None:
                if not opts["json"]:
                    self.stderr.write(f"{job.status}: epochs per fold {list(run.folds.values_list('epoch', flat=True))}")
            try:
                wait(run.job, poll_s=1.0, timeout_s=opts["timeout"], on_change=show)
            except TimeoutError as exc:
                raise CommandError(str(exc)) from exc
            run.refresh_from_db()
        summary = run_summary(run)
        if opts["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self.stdout.write(f"run {run.pk}: {run.status}" + (f", model version {run.version}" if run.version else ""))
        if opts["wait"] and run.status != Job.Status.SUCCEEDED:
            raise CommandError(f"run {run.pk} ended {run.status}")
