"""``python manage.py predict PATH --run RUN [--json]``: a verdict for a DICOM folder or NIfTI file; a side it
could not judge is null in ``sides`` with its reason in ``side_reasons``."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inference.services.prediction import predict_path
from inference.services.runs import resolve_run


class Command(BaseCommand):
    help = "Judge a new study (DICOM folder or NIfTI file) with a model: probability, verdict, sides, flagged slices."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="DICOM folder or NIfTI file")
        parser.add_argument("--run", type=int, default=None, help="TrainingRun id; default: the promoted model")
        parser.add_argument("--json", action="store_true", help="print the verdict as JSON")

    def handle(self, *args, **opts) -> None:
        try:
            run = resolve_run(opts["run"])
            doc = predict_path(opts["path"], run)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        doc.pop("timings", None)
        if opts["json"]:
            self.stdout.write(json.dumps(doc, indent=2))
            return
        line = f"{doc['series_uid']}: {doc['verdict']}"
        if doc.get("reason"):
            line += f" ({doc['reason']})"
        else:
            reasons = doc.get("side_reasons", {})
            sides = " ".join(f"{s} {doc['sides'][s] if doc['sides'][s] is not None else reasons.get(s, 'none')}"
                             for s in ("R", "L"))
            line += (f", probability {doc['probability']:.3f}, operating value {doc['operating_value']:.3f}, "
                     f"sides {sides}, flagged slices (mm) {doc['flagged_slices_mm']}")
        self.stdout.write(line)
