"""``python manage.py evaluate RUN [--objective accuracy|youden|sensitivity>=0.95|specificity>=0.9] [--json]``."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inference.ml.metrics import Bootstrap
from inference.models import TrainingRun
from inference.services.evaluation import cli_document, evaluate_run


class Command(BaseCommand):
    help = "Evaluate a training run on its test patients (image, scan, patient level with 95% bootstrap CIs)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("run", type=int, help="TrainingRun id")
        parser.add_argument("--objective", default=None,
                            help="accuracy (the original), youden, sensitivity>=0.95 or specificity>=0.9; default: the run's, "
                                 "else accuracy")
        parser.add_argument("--top-k", type=int, default=5, help="k of the top-k mean aggregator")
        parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")

    def handle(self, *args, **opts) -> None:
        run = TrainingRun.objects.filter(pk=opts["run"]).first()
        if run is None:
            raise CommandError(f"no training run {opts['run']}")
        try:
            boot = Bootstrap(n=opts["bootstrap"], seed=opts["seed"])
            evaluation = evaluate_run(run, opts["objective"], top_k=opts["top_k"], boot=boot)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        doc = cli_document(evaluation)
        if opts["json"]:
            self.stdout.write(json.dumps(doc, indent=2))
            return
        self.stdout.write(f"run {doc['run']}: operating value {doc['operating_value']:.3f} ({doc['objective']})")
        for level in ("image", "scan", "patient"):
            d = doc[level]
            parts = []
            for k in ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv"):
                ci = d.get(f"{k}_ci")
                parts.append(f"{k} {_number(d[k])}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
            self.stdout.write(f"  {level:8s} " + "; ".join(parts) + f"; confusion {d['confusion']}")
        for name, a in doc["aggregators"].items():
            self.stdout.write(f"  scan/{name:8s} value {a['operating_value']:.3f} "
                              + " ".join(f"{k} {_number(a.get(k))}" for k in ("accuracy", "sensitivity", "specificity")))


def _number(value: float | None) -> str:
    """A metric as the page shows it: 3 decimals, "n/a" where it is undefined (a class absent)."""
    return "n/a" if value is None else f"{value:.3f}"
