"""API routes of the study store and annotation (mounted under /api/)."""
from django.urls import path

from . import api

urlpatterns = [
    path("datasets/", api.DatasetList.as_view(), name="api-dataset-list"),
]
