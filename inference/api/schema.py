"""OpenAPI descriptions of inference's API views that have no serializer to guess from, so every endpoint is in
the schema and the docs (Swagger UI, Redoc): request bodies (the prediction upload as multipart with its file)
and JSON responses. A view that gains a ``serializer_class`` keeps what drf-spectacular derives from it: only
the request body of the prediction upload, which no serializer describes, is always set here."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers

from adrenal_site.api_schema import DETAIL, JSON, JSON_LIST, query_parameters

from . import dashboard, dicom, runs, verdicts
from .serializers import (CurvesQuery, EvaluationStart, JudgeStart, PredictionQuery, PrevalenceQuery,
                          RunStartSerializer, ThresholdQuery)

PREDICTION_UPLOAD = inline_serializer("PredictionUpload", {
    "file": serializers.FileField(help_text="a NIfTI (.nii, .nii.gz) or a .zip of one DICOM series"),
    "dataset": serializers.IntegerField(help_text="the dataset the study is imported into"),
    "run": serializers.IntegerField(required=False, help_text="the model; default: the dataset's promoted run"),
})
PREDICTION_OF_SERIES = inline_serializer("PredictionOfSeries", {
    "series": serializers.IntegerField(help_text="a scan already imported"),
    "run": serializers.IntegerField(required=False, help_text="the model; default: the dataset's promoted run"),
})
JOB_ACCEPTED = inline_serializer("JobAccepted", {"job": serializers.IntegerField(help_text="follow at /api/jobs/<job>/")})
DICOM_FILE = {(200, "application/dicom"): OpenApiTypes.BINARY}
PNG_FILE = {(200, "image/png"): OpenApiTypes.BINARY}
ZIP_FILE = {(200, "application/zip"): OpenApiTypes.BINARY}

# view -> {method: extend_schema(...)}
HINTS = {
    dashboard.RunEvaluations: {"get": extend_schema(responses={200: JSON_LIST}),
                               "post": extend_schema(request=EvaluationStart, responses={202: JSON})},
    dashboard.EvaluationDetail: {"get": extend_schema(responses=JSON)},
    dashboard.EvaluationScans: {"get": extend_schema(responses=JSON, parameters=query_parameters(
        sets=dashboard.SCAN_FILTERS,
        sort=f"one of {', '.join(dashboard.SCAN_SORT_KEYS)} (prefix - for descending); default outcome"))},
    dashboard.EvaluationThreshold: {"get": extend_schema(responses=JSON, parameters=[ThresholdQuery])},
    dashboard.EvaluationCurves: {"get": extend_schema(responses=JSON, parameters=query_parameters(  # reads no value
        {"level": CurvesQuery().fields["level"].choices}, aggregator="one of the evaluation's; default the run's"))},
    dashboard.EvaluationPrevalence: {"get": extend_schema(responses=JSON, parameters=[PrevalenceQuery])},
    verdicts.PredictionEvidence: {"get": extend_schema(responses=PNG_FILE, parameters=query_parameters(
        integers={"size": (*verdicts.THUMB_PX, "the PNG's side in px; default 96")}))},
    verdicts.DatasetJudge: {"post": extend_schema(request=JudgeStart, responses={202: JSON, 409: JSON})},
    dashboard.RunComparison: {"get": extend_schema(responses={200: JSON_LIST})},
    dashboard.PredictionDetail: {"get": extend_schema(responses=JSON)},
    dicom.PredictionDicom: {"get": extend_schema(responses=JSON)},
    dicom.PredictionDicomFile: {"get": extend_schema(responses=DICOM_FILE)},
    dicom.PredictionDicomZip: {"get": extend_schema(responses=ZIP_FILE)},
    runs.RunDetail: {"get": extend_schema(responses=JSON)},
    runs.RunStart: {"post": extend_schema(request=RunStartSerializer, responses={201: JSON})},
    runs.RunCancel: {"post": extend_schema(request=None, responses={202: JSON, 409: DETAIL})},
    runs.RunPromote: {"post": extend_schema(request=None, responses={200: JSON, 409: DETAIL})},
}
ALWAYS = {
    dashboard.PredictionList: {
        "get": extend_schema(operation_id="predictions_list", responses={200: JSON_LIST},
                             parameters=[PredictionQuery, *query_parameters(page=True)]),
        "post": extend_schema(request={"multipart/form-data": PREDICTION_UPLOAD, "application/json": PREDICTION_OF_SERIES},
                              responses={202: JOB_ACCEPTED}),
    },
}


def describe() -> None:
    """Attach the descriptions (once, at URL loading)."""
    for view, methods in HINTS.items():
        if not getattr(view, "serializer_class", None) and not hasattr(view, "get_serializer_class"):
            extend_schema_view(**methods)(view)
    for view, methods in ALWAYS.items():
        extend_schema_view(**methods)(view)
