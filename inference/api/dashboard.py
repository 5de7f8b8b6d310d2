"""API of evaluations, per-scan verdicts, threshold curves and prediction submission.

Leads read evaluations and start them; clinicians (and API clients) submit a study for a verdict and read
verdicts. Everything is filtered by ``Dataset.objects.visible_to(user)``.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.roles import IsClinician, IsLead
from annotations.models import Series
from annotations.services.uploads import UploadRefused
from inference.ml.operating_value import parse_objective

from ..models import Evaluation, Prediction, TrainingRun
from ..services.evaluation import metrics_at
from ..services.verdicts import model_of, side_findings
from ..tasks import start_evaluation, submit_prediction
from .runs import visible_runs

SCAN_SORT_KEYS = ("probability", "fraction", "patient", "series_uid", "verdict", "label", "outcome")
OUTCOME_ORDER = {"fn": 0, "fp": 1, "tp": 2, "tn": 3}


def visible_evaluations(user):
    return Evaluation.objects.visible_to(user).select_related("run")


def _float_param(request, name: str, default: float | None = None) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise ValidationError({name: "required"})
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValidationError({name: f"not a number: {raw!r}"}) from exc


def evaluation_summary(ev: Evaluation) -> dict:
    scan = ev.result.get("scan", {})
    return {
        "id": ev.pk, "run": ev.run_id, "objective": ev.objective, "aggregator": ev.aggregator,
        "operating_value": ev.operating_value, "created_at": ev.created_at,
        "scan": {k: scan.get(k) for k in ("auc", "auc_ci", "accuracy", "accuracy_ci", "sensitivity", "sensitivity_ci",
                                          "specificity", "specificity_ci", "confusion")},
        "test_patients": len(ev.result.get("test_patients", [])),
    }


class RunEvaluations(APIView):
    """GET a run's evaluations (newest first); POST ``{"objective"}`` starts an evaluation job."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        run = get_object_or_404(visible_runs(request.user), pk=pk)
        return Response([evaluation_summary(ev) for ev in run.evaluations.all()])

    def post(self, request, pk: int):
        run = get_object_or_404(visible_runs(request.user), pk=pk)
        objective = request.data.get("objective") or run.objective or "accuracy"
        try:
            objective = str(parse_objective(objective))
        except ValueError as exc:
            raise ValidationError({"objective": str(exc)}) from exc
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise ValidationError({"run": f"run {run.pk} is {run.status}; only a finished run can be evaluated"})
        job = start_evaluation(run, objective, user=request.user)
        return Response({"job": job.pk, "objective": objective}, status=status.HTTP_202_ACCEPTED)


class EvaluationDetail(APIView):
    """The whole evaluation document (metrics with CIs at image, scan and patient level, curves, scans)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        return Response({"id": ev.pk, "created_at": ev.created_at, **ev.result})


class EvaluationScans(APIView):
    """Per-scan verdicts: ``?sort=-probability`` (or ``outcome``: false negatives first), ``?outcome=fn,fp``,
    ``?verdict=normal``, ``?label=abnormal``. Adds per-side scores and evidence thumbnails of
    this run's stored verdicts where present (``evidence``: up to 3 ``{"url", "side", "z_mm", "probability"}``)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        scans = [dict(s) for s in ev.result.get("scans", [])]
        for field in ("outcome", "verdict", "label"):
            wanted = request.query_params.get(field)
            if wanted:
                keep = set(wanted.split(","))
                scans = [s for s in scans if s.get(field) in keep]
        sort = request.query_params.get("sort", "outcome")
        key = sort.lstrip("-")
        if key not in SCAN_SORT_KEYS:
            raise ValidationError({"sort": f"one of {', '.join(SCAN_SORT_KEYS)} (prefix - for descending)"})
        if key == "outcome":
            scans.sort(key=lambda s: (OUTCOME_ORDER.get(s["outcome"], 9), -s["probability"]), reverse=sort.startswith("-"))
        else:
            scans.sort(key=lambda s: s.get(key), reverse=sort.startswith("-"))
        stored = {p.series_id: p for p in Prediction.objects.filter(
            run_id=ev.run_id, series_id__in=[s["series_id"] for s in scans if s.get("series_id")])
            .order_by("created_at", "pk")}  # the latest verdict of this run per scan
        for s in scans:
            p = stored.get(s.get("series_id"))
            s["sides"] = s.get("sides") or (p.sides if p else {})
            s["viewer_url"] = _viewer_url(s)
            s["evidence"] = [{"url": f"/api/predictions/{p.pk}/evidence/{n}.png?size=64", "side": e["side"],
                              "z_mm": e["z_mm"], "probability": e["probability"]}
                             for n, e in enumerate((p.evidence or [])[:3])] if p else []
        return Response({"evaluation": ev.pk, "operating_value": ev.operating_value, "count": len(scans),
                         "scans": scans})


def _viewer_url(scan: dict) -> str | None:
    if not scan.get("series_id"):
        return None
    flagged = scan.get("flagged_slices_mm") or []
    if flagged:
        return f"/series/{scan['series_id']}/?z_mm={flagged[len(flagged) // 2]}"
    return f"/series/{scan['series_id']}/"


class EvaluationThreshold(APIView):
    """Confusion matrix and metrics at ``?value=`` (``&level=scan|patient&aggregator=fraction``)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        value = _float_param(request, "value", ev.operating_value)
        try:
            return Response(metrics_at(ev, value, request.query_params.get("level", "scan"),
                                       request.query_params.get("aggregator", "fraction")))
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc


class EvaluationCurves(APIView):
    """ROC and threshold curve of one level: ``?level=image|scan|patient&aggregator=fraction``."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        level = request.query_params.get("level", "scan")
        aggregator = request.query_params.get("aggregator", "fraction")
        if level == "scan":
            doc = ev.result.get("aggregators", {}).get(aggregator)
            if doc is None:
                raise ValidationError({"aggregator": f"unknown aggregator {aggregator!r}"})
        elif level in ("image", "patient"):
            doc = ev.result[level]
        else:
            raise ValidationError({"level": "image, scan or patient"})
        return Response({"level": level, "aggregator": aggregator, "operating_value": doc.get("operating_value",
                         doc.get("threshold")), "roc": doc.get("roc"), "threshold_curve": doc.get("threshold_curve")})


class RunComparison(APIView):
    """Latest evaluation of each visible run, grouped by the test patients they were evaluated on."""

    permission_classes = [IsLead]

    def get(self, request):
        groups: dict[int, dict] = {}
        for run in visible_runs(request.user).select_related("dataset", "split").prefetch_related("evaluations"):
            ev = run.evaluations.first()
            g = groups.setdefault(run.split_id, {"split": run.split_id, "dataset": run.dataset.name,
                                                 "test_patients": len(run.split.test_patients or []), "runs": []})
            g["runs"].append({"run": run.pk, "name": run.name, "preset": run.preset, "status": run.status,
                              "version": run.version, "promoted": run.promoted,
                              "evaluation": evaluation_summary(ev) if ev else None})
        return Response(list(groups.values()))


def _prediction_doc(p: Prediction) -> dict:
    return {"findings": side_findings(p), "model": model_of(p),
        "id": p.pk, "series": p.series_id, "series_uid": p.series.series_uid, "run": p.run_id,
        "probability": p.probability, "fraction": p.fraction, "verdict": p.verdict, "reason": p.reason,
        "operating_value": p.operating_value, "sides": p.sides, "flagged_slices_mm": p.flagged_slices_mm,
        "slice_scores": p.slice_scores, "score": p.score, "side_details": p.side_details, "evidence": p.evidence,
        "job": p.job_id, "created_at": p.created_at,
    }


def visible_predictions(user):
    return Prediction.objects.visible_to(user).select_related("series", "run__dataset")


class PredictionList(APIView):
    """GET verdicts (``?series=``, ``?run=``); POST a study for a verdict with a promoted model:
    ``{"series": id}`` for a scan already imported, or a multipart ``file`` (NIfTI, or a zip of a DICOM
    series) with ``dataset``; ``run`` defaults to the dataset's promoted model. Answers 202 with the job."""

    permission_classes = [IsClinician]

    def get(self, request):
        qs = visible_predictions(request.user)
        for field in ("series", "run"):
            if request.query_params.get(field):
                qs = qs.filter(**{f"{field}_id": request.query_params[field]})
        return Response([_prediction_doc(p) for p in qs[:500]])

    def post(self, request):
        try:
            job = submit_prediction(request.user, series_id=request.data.get("series"),
                                    run_id=request.data.get("run"), upload=request.FILES.get("file"),
                                    dataset_id=request.data.get("dataset"))
        except (ValueError, UploadRefused, Series.DoesNotExist, TrainingRun.DoesNotExist) as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)


class PredictionDetail(APIView):
    permission_classes = [IsClinician]

    def get(self, request, pk: int):
        return Response(_prediction_doc(get_object_or_404(visible_predictions(request.user), pk=pk)))
