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

from adrenal_site.api_params import Pagination, choices_param
from adrenal_site.roles import IsClinician, IsLead
from annotations.api.strict import query
from annotations.models import Dataset, Series
from annotations.services.uploads import UploadRefused, declared_too_large, limit_request
from inference.ml import metrics as M
from inference.ml.operating_value import parse_objective

from ..models import Evaluation, Prediction, TrainingRun
from ..services.evaluation import (comparison_groups, curves_of, evaluation_summary, metrics_at, prevalence_at,
                                   reading_aids, run_aggregator)
from ..services.runs import RunUnavailable
from ..services.verdicts import verdict_document
from ..tasks import start_evaluation, submit_prediction
from .serializers import (CurvesQuery, EvaluationStart, PredictionQuery, PredictionSubmission, PrevalenceQuery,
                          ThresholdQuery)
from .runs import visible_runs

SCAN_SORT_KEYS = ("score", "probability", "fraction", "patient", "series_uid", "verdict", "label", "outcome")
OUTCOME_ORDER = {"fn": 0, "fp": 1, "tp": 2, "tn": 3}
SCAN_FILTERS = {"outcome": tuple(OUTCOME_ORDER), "verdict": ("normal", "abnormal"), "label": ("normal", "abnormal")}


def visible_evaluations(user):
    return Evaluation.objects.visible_to(user).select_related("run")


class RunEvaluations(APIView):
    """GET a run's evaluations (newest first); POST ``{"objective"}`` starts an evaluation job."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        run = get_object_or_404(visible_runs(request.user), pk=pk)
        return Response([evaluation_summary(ev) for ev in run.evaluations.all()])

    def post(self, request, pk: int):
        run = get_object_or_404(visible_runs(request.user), pk=pk)
        form = EvaluationStart(data=request.data if isinstance(request.data, dict) else {"objective": request.data})
        form.is_valid(raise_exception=True)
        objective = form.validated_data.get("objective") or run.objective or "accuracy"
        try:
            objective = str(parse_objective(objective))
        except ValueError as exc:
            raise ValidationError({"objective": [str(exc)]}) from exc
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise ValidationError({"run": [f"run {run.pk} is {run.status}; only a finished run can be evaluated"]})
        job = start_evaluation(run, objective, user=request.user)
        return Response({"job": job.pk, "objective": objective}, status=status.HTTP_202_ACCEPTED)


class EvaluationDetail(APIView):
    """The whole evaluation document (metrics with CIs at image, scan and patient level, curves, scans)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        doc = {"id": ev.pk, "created_at": ev.created_at, **ev.result}
        if "reading_aids" not in doc:  # evaluated before the reading aids were stored: the same numbers
            doc["reading_aids"] = reading_aids(ev.result)
        return Response(doc)


class EvaluationScans(APIView):
    """Per-scan verdicts: ``?sort=-score`` (the value compared with the operating value; or ``probability``,
    ``fraction``, ``outcome``: false negatives first, each by score), ``?outcome=fn,fp``
    (fn, fp, tp, tn), ``?verdict=normal`` and ``?label=abnormal`` (normal, abnormal; each a comma-separated set);
    an unknown value is a 400 naming the parameter and the values it takes. Adds per-side scores and evidence
    thumbnails of this run's stored verdicts where present (``evidence``: up to 3 ``{"url", "side", "z_mm", "probability"}``)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        scans = [dict(s) for s in ev.result.get("scans", [])]
        for field, choices in SCAN_FILTERS.items():
            keep = choices_param(request, field, choices)
            if keep:
                scans = [s for s in scans if s.get(field) in keep]
        sort = request.query_params.get("sort") or "outcome"
        key = sort.removeprefix("-")
        if key not in SCAN_SORT_KEYS:
            keys = ", ".join(SCAN_SORT_KEYS)
            raise ValidationError({"sort": [f"unknown value {sort[:40]!r}; one of {keys} (prefix - for descending)"]})
        if key == "outcome":
            scans.sort(key=lambda s: (OUTCOME_ORDER.get(s["outcome"], 9), -s.get("score", s["probability"])),
                       reverse=sort.startswith("-"))
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
    """Confusion matrix and metrics at ``?value=`` (default: the aggregator's operating value) of
    ``&level=scan|patient&aggregator=`` (default: the run's scan rule, ``sides`` for a per-gland run)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        q = query(ThresholdQuery, request, aggregators=list(ev.result.get("aggregators", {})))
        aggregator = q.get("aggregator") or run_aggregator(ev)
        value = q.get("value", ev.result.get("aggregators", {}).get(aggregator, {}).get("operating_value",
                                                                                      ev.operating_value))
        try:
            return Response(metrics_at(ev, value, q["level"], aggregator))
        except ValueError as exc:
            raise ValidationError({"value": [str(exc)]}) from exc


class EvaluationPrevalence(APIView):
    """PPV and NPV re-stated at a prevalence: ``?prevalence=0.01`` (0 < p < 1; default 1%, incidentalomas are about
    1% of abdominal CTs) from the test scans' sensitivity and specificity at ``?value=`` (default: the chosen
    operating value) of ``?aggregator=`` (default: the run's). Answers ``{"prevalence", "operating_value",
    "aggregator", "sensitivity", "specificity", "ppv", "npv", "test_ppv", "test_npv"}``; 400 names a bad field."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        q = query(PrevalenceQuery, request, aggregators=list(ev.result.get("aggregators", {})))
        prevalence, value, aggregator = q.get("prevalence", M.DEFAULT_PREVALENCE), q.get("value"), q.get("aggregator")
        try:
            return Response(prevalence_at(ev, prevalence, value, aggregator))
        except ValueError as exc:
            raise ValidationError({"prevalence": [str(exc)]}) from exc


class EvaluationCurves(APIView):
    """ROC and threshold curve of one level: ``?level=image|scan|patient&aggregator=`` (default: the run's; the
    patient level is that aggregator's, a patient abnormal when any scan is)."""

    permission_classes = [IsLead]

    def get(self, request, pk: int):
        ev = get_object_or_404(visible_evaluations(request.user), pk=pk)
        q = query(CurvesQuery, request, aggregators=list(ev.result.get("aggregators", {})))
        try:
            return Response(curves_of(ev, q["level"], q.get("aggregator") or run_aggregator(ev)))
        except ValueError as exc:
            raise ValidationError({"level": [str(exc)]}) from exc


class RunComparison(APIView):
    """Latest evaluation of each visible run, grouped by the test patients they were evaluated on."""

    permission_classes = [IsLead]

    def get(self, request):
        out = []
        for g in comparison_groups(visible_runs(request.user)):
            entries = g.pop("entries")
            out.append(g | {"runs": [{"run": run.pk, "name": run.name, "preset": run.preset, "status": run.status,
                                      "version": run.version, "promoted": run.promoted, "evaluation": summary}
                                     for run, summary in entries]})
        return Response(out)


def _prediction_doc(p: Prediction) -> dict:
    """A verdict as the API gives it: the pages' document (:func:`verdict_document`) with the series UID, the
    image-vote fraction and the job, and ``created_at`` left to DRF's date format."""
    return verdict_document(p) | {"series_uid": p.series.series_uid, "fraction": p.fraction, "job": p.job_id,
                                  "created_at": p.created_at}


def visible_predictions(user):
    return Prediction.objects.visible_to(user).select_related("series", "run__dataset")


PREDICTIONS_PAGE = 500


class PredictionList(APIView):
    """GET verdicts (``?series=``, ``?run=``); POST a study for a verdict with a promoted model:
    ``{"series": id}`` for a scan already imported, or a multipart ``file`` (NIfTI, or a zip of a DICOM
    series) with ``dataset``; ``run`` defaults to the dataset's promoted model. Answers 202 with the job."""

    permission_classes = [IsClinician]

    def get(self, request):
        """A list, newest first: ``?limit=`` (1 to ``MAX_PAGE_SIZE``, default 500; more is read as the maximum) and
        ``?offset=`` as every list of the API takes them (400 naming a bad one)."""
        qs = visible_predictions(request.user)
        for field, value in query(PredictionQuery, request).items():
            qs = qs.filter(**{f"{field}_id": value})
        paging = Pagination()
        paging.default_limit = PREDICTIONS_PAGE
        limit, offset = paging.get_limit(request), paging.get_offset(request)
        return Response([_prediction_doc(p) for p in qs[offset:offset + limit]])

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":  # before authentication reads the body (CSRF): stop past the size limit
            limit_request(request)
        return super().initialize_request(request, *args, **kwargs)

    def post(self, request):
        refused = declared_too_large(request)
        if not refused:
            request.data  # noqa: B018 - parsed here, through the size-limiting handler
            refused = getattr(request._request, "upload_refused", None)
        if refused:
            return Response({"file": [refused]}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        if not isinstance(request.data, dict):
            raise ValidationError({"detail": "expected an object with series, or a multipart file"})
        form = PredictionSubmission(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            job = submit_prediction(request.user, series_id=data.get("series"), run_id=data.get("run"),
                                    upload=data.get("file"), dataset_id=data.get("dataset"))
        except Series.DoesNotExist as exc:
            raise ValidationError({"series": [f"no scan {data.get('series')} you may see"]}) from exc
        except Dataset.DoesNotExist as exc:
            raise ValidationError({"dataset": [str(exc)]}) from exc
        except UploadRefused as exc:
            raise ValidationError({"file": [str(exc)]}) from exc
        except RunUnavailable as exc:
            raise ValidationError({"run": [str(exc)]}) from exc
        except (ValueError, TrainingRun.DoesNotExist) as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)


class PredictionDetail(APIView):
    permission_classes = [IsClinician]

    def get(self, request, pk: int):
        return Response(_prediction_doc(get_object_or_404(visible_predictions(request.user), pk=pk)))
