"""API routes of 2.5D images, runs, evaluations and predictions (mounted under /api/)."""
from django.urls import path

from . import dashboard, dicom, runs, schema, verdicts

schema.describe()  # OpenAPI descriptions of the views without serializers (request bodies, uploads)

urlpatterns = [
    path("runs/", runs.RunList.as_view(), name="api-run-list"),
    path("runs/start/", runs.RunStart.as_view(), name="api-run-start"),
    path("runs/<int:pk>/", runs.RunDetail.as_view(), name="api-run-detail"),
    path("runs/<int:pk>/cancel/", runs.RunCancel.as_view(), name="api-run-cancel"),
    path("runs/<int:pk>/promote/", runs.RunPromote.as_view(), name="api-run-promote"),
    path("runs/compare/", dashboard.RunComparison.as_view(), name="api-run-compare"),
    path("runs/<int:pk>/evaluations/", dashboard.RunEvaluations.as_view(), name="api-run-evaluations"),
    path("evaluations/<int:pk>/", dashboard.EvaluationDetail.as_view(), name="api-evaluation"),
    path("evaluations/<int:pk>/scans/", dashboard.EvaluationScans.as_view(), name="api-evaluation-scans"),
    path("evaluations/<int:pk>/threshold/", dashboard.EvaluationThreshold.as_view(), name="api-evaluation-threshold"),
    path("evaluations/<int:pk>/prevalence/", dashboard.EvaluationPrevalence.as_view(),
         name="api-evaluation-prevalence"),
    path("evaluations/<int:pk>/curves/", dashboard.EvaluationCurves.as_view(), name="api-evaluation-curves"),
    path("predictions/", dashboard.PredictionList.as_view(), name="api-predictions"),
    path("predictions/<int:pk>/", dashboard.PredictionDetail.as_view(), name="api-prediction"),
    path("predictions/<int:pk>/evidence/<int:n>.png", verdicts.PredictionEvidence.as_view(),
         name="api-prediction-evidence"),
    path("datasets/<int:pk>/judge/", verdicts.DatasetJudge.as_view(), name="api-dataset-judge"),
    path("predictions/<int:pk>/dicom/", dicom.PredictionDicom.as_view(), name="api-prediction-dicom"),
    path("predictions/<int:pk>/dicom/<str:sop_uid>.dcm", dicom.PredictionDicomFile.as_view(),
         name="api-prediction-dicom-file"),
    path("predictions/<int:pk>/dicom.zip", dicom.PredictionDicomZip.as_view(), name="api-prediction-dicom-zip"),
]
