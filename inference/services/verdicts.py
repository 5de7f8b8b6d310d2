"""The latest verdict of each scan, as the study store's worklist and viewer show them (registered with
``annotations.services.verdicts`` in ``InferenceConfig.ready``)."""
from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from annotations.models import Series
from annotations.services.verdicts import VerdictSource

from ..models import Prediction


def annotate_latest(qs: QuerySet) -> QuerySet:
    """Series rows with ``verdict`` and ``probability`` of their latest Prediction."""
    latest = Prediction.objects.filter(series=OuterRef("pk")).order_by("-created_at", "-pk")
    return qs.annotate(verdict=Subquery(latest.values("verdict")[:1]),
                       probability=Subquery(latest.values("probability")[:1]))


def latest(series: Series) -> dict | None:
    p = Prediction.objects.filter(series=series).order_by("-created_at", "-pk").first()
    if p is None:
        return None
    return {"id": p.pk, "verdict": p.verdict, "verdict_display": p.get_verdict_display(),
            "probability": p.probability, "reason": p.reason, "sides": p.sides,
            "flagged_slices_mm": p.flagged_slices_mm, "slice_scores": p.slice_scores,
            "operating_value": p.operating_value, "run": p.run_id, "score": p.score,
            "side_details": p.side_details, "evidence": p.evidence}


SOURCE = VerdictSource(annotate_latest=annotate_latest, latest=latest)
