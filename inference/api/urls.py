"""API routes of 2.5D images, runs, evaluations and predictions (mounted under /api/)."""
from django.urls import path

from . import api, api_dashboard

urlpatterns = [
    path("runs/", api.RunList.as_view(), name="api-run-list"),
    path("runs/start/", api.RunStart.as_view(), name="api-run-start"),
    path("runs/<int:pk>/", api.RunDetail.as_view(), name="api-run-detail"),
    path("runs/<int:pk>/cancel/", api.RunCancel.as_view(), name="api-run-cancel"),
    path("runs/<int:pk>/promote/", api.RunPromote.as_view(), name="api-run-promote"),
    path("runs/compare/", api_dashboard.RunComparison.as_view(), name="api-run-compare"),
    path("runs/<int:pk>/evaluations/", api_dashboard.RunEvaluations.as_view(), name="api-run-evaluations"),
    path("evaluations/<int:pk>/", api_dashboard.EvaluationDetail.as_view(), name="api-evaluation"),
    path("evaluations/<int:pk>/scans/", api_dashboard.EvaluationScans.as_view(), name="api-evaluation-scans"),
    path("evaluations/<int:pk>/threshold/", api_dashboard.EvaluationThreshold.as_view(), name="api-evaluation-threshold"),
    path("evaluations/<int:pk>/curves/", api_dashboard.EvaluationCurves.as_view(), name="api-evaluation-curves"),
    path("predictions/", api_dashboard.PredictionList.as_view(), name="api-predictions"),
    path("predictions/<int:pk>/", api_dashboard.PredictionDetail.as_view(), name="api-prediction"),
]
