"""Test scans whose label changed in the store after a run was evaluated.

A run's evaluation scores its test scans against the labels they had when the run was aggregated
(``predictions.csv``). A clinician who corrects a label afterwards (pathology came back, a lesion was missed)
changes what the confusion matrix should say, and a lead reading the dashboard must know that it does not yet:
this lists those scans, computed when the dashboard is read, so the lead can start a new run.
"""
from __future__ import annotations

from annotations.models import Series

from ..models import Evaluation
from .training_data import LABEL_VALUE, scan_labels

LABEL_NAME = {v: k for k, v in LABEL_VALUE.items()}


def label_changes(evaluation: Evaluation) -> list[dict]:
    """``[{"series_id", "patient", "was", "now"}]`` for each scan of the evaluation whose current label (its own,
    else its patient's: ``training_data.scan_labels``) is not the one it was evaluated with; ``now`` is
    "normal", "abnormal", "unlabelled" or "deleted" (the scan, or its patient, deleted from the store since)."""
    current = scan_labels(evaluation.run.dataset)
    scans = (evaluation.result or {}).get("scans", [])
    stored = set(Series.objects.filter(pk__in=[int(s["series_id"]) for s in scans if s.get("series_id") is not None])
                 .values_list("pk", flat=True))
    out = []
    for scan in scans:
        sid = scan.get("series_id")
        if sid is None:
            continue
        now = current.get(int(sid))
        now_label = LABEL_NAME[now[1]] if now else ("unlabelled" if int(sid) in stored else "deleted")
        if now_label != scan.get("label"):
            out.append({"series_id": sid, "patient": scan.get("patient"), "was": scan.get("label"), "now": now_label})
    return out
