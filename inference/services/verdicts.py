"""The latest verdict of each scan, as the study store's worklist and viewer show them (registered with
``annotations.services.verdicts`` in ``InferenceConfig.ready``)."""
from __future__ import annotations

from django.db.models import FloatField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from adrenal_site.jobs.models import Job
from annotations.models import Dataset, Series
from annotations.services.boxes import SIDE_NAMES
from annotations.services.verdicts import VerdictSource

from ..models import Prediction
from .runs import resolve_run


def annotate_latest(qs: QuerySet) -> QuerySet:
    """Series rows with ``verdict``, ``probability``, ``verdict_cautions`` and ``verdict_cutoff`` (the operating
    value as a probability, what :func:`probability_cutoff` reads: a per-gland verdict's glands share it; None
    for a joined run's) of their latest Prediction."""
    latest = Prediction.objects.filter(series=OuterRef("pk")).order_by("-created_at", "-pk")
    cutoff = [Cast(KT(f"side_details__{side}__probability_cutoff"), FloatField()) for side in SIDE_NAMES]
    return qs.annotate(verdict=Subquery(latest.values("verdict")[:1]),
                       probability=Subquery(latest.values("probability")[:1]),
                       verdict_cautions=Subquery(latest.values("cautions")[:1]),
                       verdict_cutoff=Subquery(latest.annotate(cutoff=Coalesce(*cutoff)).values("cutoff")[:1],
                                               output_field=FloatField()))


def side_findings(p: Prediction) -> list[dict]:
    """Both glands' findings of a verdict, right first: ``{"side", "name", "verdict", "verdict_display",
    "score", "probability", "probability_cutoff" (the operating value as a probability: the gland is abnormal
    from there), "flagged_slices_mm", "reason"}``. A side without a score is "not assessable" with
    the reason: the scan's (not CT, region not covered...) or its gland's own (no 2.5D images from its box).
    Joined (original) runs have a per-side probability only, from blanking the other half: no per-side
    verdict."""
    rows = []
    for side in ("R", "L"):
        d = (p.side_details or {}).get(side)
        row = {"side": side, "name": SIDE_NAMES[side], "score": None, "probability": None,
               "probability_cutoff": None, "verdict": None,
               "verdict_display": "", "flagged_slices_mm": [], "reason": ""}
        if p.verdict == Prediction.Verdict.NOT_ASSESSABLE:
            row |= {"verdict": "not_assessable", "verdict_display": "not assessable", "reason": p.reason}
        elif d:  # a side the scan does not hold carries {"verdict": "not_assessable", "reason": "not assessable: ..."}
            verdict = d.get("verdict")
            row |= {"score": d.get("score"), "probability": d.get("probability"),
                    "probability_cutoff": d.get("probability_cutoff"), "verdict": verdict,
                    "verdict_display": (verdict or "").replace("_", " "),
                    "flagged_slices_mm": d.get("flagged_slices_mm", []), "reason": d.get("reason", "")}
        elif (p.sides or {}).get(side) is not None:
            row |= {"probability": p.sides[side], "verdict_display": "no per-side verdict (joined model)"}
        else:
            row |= {"verdict": "not_assessable", "verdict_display": "not assessable",
                    "reason": f"no 2.5D images of the {SIDE_NAMES[side]} gland (its box is outside the scan)"}
        rows.append(row)
    return rows


def run_identity(run) -> dict:
    """A model (training run) as the pages name it."""
    return {"run": run.pk, "name": run.name, "preset": run.preset, "version": run.version,
            "dataset": run.dataset.name, "promoted": run.promoted}


def model_of(p: Prediction) -> dict:
    """The run that made a verdict, as the pages name it, with the operating value the verdict used."""
    return run_identity(p.run) | {"operating_value": p.operating_value}


def verdict_document(p: Prediction) -> dict:
    """Everything a page shows of one verdict: scores, per-side findings, evidence maps and the model."""
    return {"id": p.pk, "series": p.series_id, "verdict": p.verdict, "verdict_display": p.get_verdict_display(),
            "probability": p.probability, "reason": p.reason, "sides": p.sides,
            "flagged_slices_mm": p.flagged_slices_mm, "slice_scores": p.slice_scores,
            "operating_value": p.operating_value, "run": p.run_id, "score": p.score,
            "side_details": p.side_details, "evidence": p.evidence, "findings": side_findings(p),
            "cautions": p.cautions, "model": model_of(p), "probability_cutoff": probability_cutoff(p),
            "created_at": p.created_at.isoformat()}


def probability_cutoff(p: Prediction) -> float | None:
    """The verdict's operating value on the probability scale (per-gland runs record it with each side), or None
    (joined runs, whose probability is not the score the operating value applies to)."""
    return next((d["probability_cutoff"] for d in (p.side_details or {}).values()
                 if isinstance(d, dict) and d.get("probability_cutoff") is not None), None)


def latest(series: Series, user=None, prediction: int | None = None) -> dict | None:
    """The newest verdict on ``series`` (with ``user``: the newest one ``user`` may see,
    ``Prediction.objects.visible_to``), as the viewer shows it; None when there is none. With ``prediction`` (an
    id): that verdict when it is one of those (a verdict page's link into the viewer shows the verdict it came
    from), else the newest. ``is_latest`` says whether the verdict returned is the newest one."""
    qs = Prediction.objects.filter(series=series) if user is None else Prediction.objects.visible_to(user).filter(
        series=series)
    qs = qs.select_related("run__dataset").order_by("-created_at", "-pk")
    newest = qs.first()
    p = (qs.filter(pk=prediction).first() if prediction is not None else None) or newest
    return verdict_document(p) | {"is_latest": p.pk == newest.pk} if p is not None else None


def latest_judging_job(dataset_id: int, run_id: int | None = None) -> Job | None:
    """The newest "judge every scan" job of a dataset (with ``run_id``: of that model), or None."""
    jobs = Job.objects.filter(kind="judge_dataset", params__dataset_id=dataset_id)
    if run_id is not None:
        jobs = jobs.filter(params__run_id=run_id)
    return jobs.order_by("-pk").first()


def judging(dataset: Dataset) -> dict:
    """For the store's dataset page: the promoted model that "judge every scan" would use (:func:`run_identity`,
    or None with ``why``) and the dataset's latest ``judge_dataset`` job."""
    try:
        run = resolve_run(None, dataset)
    except ValueError as exc:
        model, why = None, str(exc)
    else:
        model, why = run_identity(run), ""
    return {"model": model, "why": why, "job": latest_judging_job(dataset.pk)}


# ``start_judging`` (``tasks.start_judge_dataset``) is added where the source is registered: services do not
# import the tasks that call them
SOURCE = VerdictSource(annotate_latest=annotate_latest, latest=latest, judging=judging)
