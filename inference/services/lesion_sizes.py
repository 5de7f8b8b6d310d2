"""Sensitivity by lesion size on a run's test scans, from the lesion markers clinicians set in the viewer.

Small lesions are what a detector misses first (the benchmark's misses are mostly 8-14 mm), and guidelines
define an adrenal incidentaloma from 1 cm (ESE/ENSAT 2016), so a lead needs to see how sensitivity falls with
size before trusting a verdict of "normal". Computed when the dashboard is read, from the stored evaluation and
the markers as they are now (a marker set after the evaluation counts).
"""
from __future__ import annotations

from annotations.services.findings import dataset_lesion_markers
from inference.ml import metrics as M
from inference.ml.verdict import verdict_of

from ..models import Evaluation


def lesion_size_sensitivity(evaluation: Evaluation) -> dict:
    """Sensitivity at the evaluation's operating value, per lesion-size stratum
    (:func:`inference.ml.metrics.sensitivity_by_size`), over the marked lesions of its abnormal test scans.

    The unit is a marked lesion (one per side). For a per-gland run (aggregator ``sides``) a lesion counts as
    found when its own side's score reaches the operating value, so a lesion is not credited to the other
    gland's score; for a joined run, when the scan's verdict is abnormal. Abnormal test scans without any
    marker are counted apart (``unmarked``: found / total by the scan verdict).

    Returns ``{"operating_value", "unit": "side" | "scan", "strata": [...], "marked": n, "unmarked":
    {"detected", "total"}}``."""
    result = evaluation.result or {}
    value = float(result.get("operating_value", evaluation.operating_value))
    per_side = result.get("aggregator") == "sides"
    abnormal = [s for s in result.get("scans", []) if s.get("label") == "abnormal"]
    markers = dataset_lesion_markers(series=[s["series_id"] for s in abnormal if s.get("series_id")])
    lesions: list[tuple[float, bool]] = []
    unmarked = {"detected": 0, "total": 0}
    for scan in abnormal:
        marked = markers.get(scan.get("series_id"), {})
        if not marked:
            unmarked["total"] += 1
            unmarked["detected"] += scan.get("verdict") == "abnormal"
            continue
        for side, marker in marked.items():
            score = (scan.get("sides") or {}).get(side)
            found = verdict_of(score, value) if per_side and score is not None else scan.get("verdict")
            found = found == "abnormal"
            lesions.append((marker.diameter_mm, found))
    return {"operating_value": value, "unit": "side" if per_side else "scan",
            "strata": M.sensitivity_by_size(lesions), "marked": len(lesions), "unmarked": unmarked}
