"""API routes of 2.5D images, runs, evaluations and predictions (mounted under /api/)."""
from django.urls import path

from . import api

urlpatterns = [
    path("runs/", api.RunList.as_view(), name="api-run-list"),
]
