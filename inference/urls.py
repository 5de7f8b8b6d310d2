"""Pages of models, runs and dashboards (leads)."""
from django.urls import path

from . import views_dashboard, views_training

urlpatterns = [
    path("runs/", views_training.runs, name="runs"),
    path("runs/images/", views_training.images_build, name="images-build"),
    path("runs/<int:pk>/", views_training.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", views_training.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/promote/", views_training.run_promote, name="run-promote"),
    path("runs/compare/", views_dashboard.compare, name="runs-compare"),
    path("runs/<int:pk>/dashboard/", views_dashboard.run_dashboard, name="run-dashboard"),
    path("runs/<int:pk>/evaluation.csv", views_dashboard.export_csv, name="run-export-csv"),
    path("runs/<int:pk>/evaluation.json", views_dashboard.export_json, name="run-export-json"),
]
