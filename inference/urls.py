"""Pages of models, runs and dashboards (leads)."""
from django.urls import path

from . import views, views_dashboard

urlpatterns = [
    path("runs/", views.runs, name="runs"),
    path("runs/compare/", views_dashboard.compare, name="runs-compare"),
    path("runs/<int:pk>/dashboard/", views_dashboard.run_dashboard, name="run-dashboard"),
    path("runs/<int:pk>/evaluation.csv", views_dashboard.export_csv, name="run-export-csv"),
    path("runs/<int:pk>/evaluation.json", views_dashboard.export_json, name="run-export-json"),
]
