"""API routes of the study store and annotation (mounted under /api/)."""
from django.urls import path

from . import api

urlpatterns = [
    path("datasets/", api.DatasetList.as_view(), name="api-dataset-list"),
    # study store (h2)
    path("datasets/<int:pk>/", api.DatasetDetail.as_view(), name="api-dataset-detail"),
    path("datasets/<int:pk>/patients/", api.DatasetPatients.as_view(), name="api-dataset-patients"),
    path("datasets/<int:pk>/series/", api.DatasetSeries.as_view(), name="api-dataset-series"),
    path("datasets/<int:pk>/imports/", api.DatasetImports.as_view(), name="api-dataset-imports"),
    path("patients/<int:pk>/labels/", api.PatientLabels.as_view(), name="api-patient-labels"),
    path("imports/<int:pk>/", api.ImportReportDetail.as_view(), name="api-import-detail"),
]
