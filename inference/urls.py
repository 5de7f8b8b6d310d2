"""Pages of models, runs and dashboards (leads)."""
from django.urls import path

from . import views

urlpatterns = [
    path("runs/", views.runs, name="runs"),
]
