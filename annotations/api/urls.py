"""API routes of the study store and annotation (mounted under /api/)."""
from django.urls import path

from . import api, api_viewer

urlpatterns = [
    path("datasets/", api.DatasetList.as_view(), name="api-dataset-list"),
    # study store (h2)
    path("datasets/<int:pk>/", api.DatasetDetail.as_view(), name="api-dataset-detail"),
    path("datasets/<int:pk>/patients/", api.DatasetPatients.as_view(), name="api-dataset-patients"),
    path("datasets/<int:pk>/series/", api.DatasetSeries.as_view(), name="api-dataset-series"),
    path("datasets/<int:pk>/imports/", api.DatasetImports.as_view(), name="api-dataset-imports"),
    path("patients/<int:pk>/labels/", api.PatientLabels.as_view(), name="api-patient-labels"),
    path("imports/<int:pk>/", api.ImportReportDetail.as_view(), name="api-import-detail"),
    # worklist and viewer (h4)
    path("datasets/<int:pk>/worklist/", api_viewer.Worklist.as_view(), name="api-worklist"),
    path("series/<int:pk>/next-unconfirmed/", api_viewer.NextUnconfirmed.as_view(), name="api-next-unconfirmed"),
    path("series/<int:pk>/volume/", api_viewer.VolumeHeader.as_view(), name="api-volume-header"),
    path("series/<int:pk>/volume/data/", api_viewer.VolumeData.as_view(), name="api-volume-data"),
    path("series/<int:pk>/boxes/", api_viewer.Boxes.as_view(), name="api-boxes"),
    path("series/<int:pk>/boxes/<str:side>/", api_viewer.BoxSide.as_view(), name="api-box"),
    path("series/<int:pk>/boxes/<str:side>/confirm/", api_viewer.BoxConfirm.as_view(), name="api-box-confirm"),
    path("series/<int:pk>/boxes/<str:side>/undo/", api_viewer.BoxUndo.as_view(), name="api-box-undo"),
    path("series/<int:pk>/boxes/<str:side>/history/", api_viewer.BoxHistory.as_view(), name="api-box-history"),
]
