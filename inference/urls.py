"""Pages of models, runs and dashboards (leads)."""
from django.urls import path

from .views import dashboard, training, verdicts

urlpatterns = [
    path("verdicts/", verdicts.submit, name="verdicts"),
    path("verdicts/jobs/<int:pk>/", verdicts.verdict_job, name="verdict-job"),
    path("runs/", training.runs, name="runs"),
    path("runs/images/", training.images_build, name="images-build"),
    path("runs/<int:pk>/", training.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", training.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/promote/", training.run_promote, name="run-promote"),
    path("runs/compare/", dashboard.compare, name="runs-compare"),
    path("runs/<int:pk>/dashboard/", dashboard.run_dashboard, name="run-dashboard"),
    path("runs/<int:pk>/judge/", dashboard.judge_dataset, name="run-judge-dataset"),
    path("runs/<int:pk>/evaluation.csv", dashboard.export_csv, name="run-export-csv"),
    path("runs/<int:pk>/evaluation.json", dashboard.export_json, name="run-export-json"),
]
