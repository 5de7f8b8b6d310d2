"""API routes of the study store and annotation (mounted under /api/)."""
from django.urls import path

from . import findings, store, viewer

urlpatterns = [
    path("datasets/", store.DatasetList.as_view(), name="api-dataset-list"),
    path("datasets/<int:pk>/", store.DatasetDetail.as_view(), name="api-dataset-detail"),
    path("datasets/<int:pk>/patients/", store.DatasetPatients.as_view(), name="api-dataset-patients"),
    path("datasets/<int:pk>/series/", store.DatasetSeries.as_view(), name="api-dataset-series"),
    path("datasets/<int:pk>/imports/", store.DatasetImports.as_view(), name="api-dataset-imports"),
    path("patients/<int:pk>/labels/", store.PatientLabels.as_view(), name="api-patient-labels"),
    path("imports/<int:pk>/", store.ImportReportDetail.as_view(), name="api-import-detail"),
    path("datasets/<int:pk>/worklist/", viewer.Worklist.as_view(), name="api-worklist"),
    path("series/<int:pk>/next-unconfirmed/", viewer.NextUnconfirmed.as_view(), name="api-next-unconfirmed"),
    path("series/<int:pk>/volume/", viewer.VolumeHeader.as_view(), name="api-volume-header"),
    path("series/<int:pk>/volume/data/", viewer.VolumeData.as_view(), name="api-volume-data"),
    path("series/<int:pk>/volume/slabs/<int:n>/", viewer.VolumeSlab.as_view(), name="api-volume-slab"),
    path("series/<int:pk>/boxes/", viewer.Boxes.as_view(), name="api-boxes"),
    path("series/<int:pk>/boxes/<str:side>/", viewer.BoxSide.as_view(), name="api-box"),
    path("series/<int:pk>/boxes/<str:side>/confirm/", viewer.BoxConfirm.as_view(), name="api-box-confirm"),
    path("series/<int:pk>/boxes/<str:side>/undo/", viewer.BoxUndo.as_view(), name="api-box-undo"),
    path("series/<int:pk>/boxes/<str:side>/redo/", viewer.BoxRedo.as_view(), name="api-box-redo"),
    path("series/<int:pk>/boxes/<str:side>/restore/", viewer.BoxRestore.as_view(), name="api-box-restore"),
    path("series/<int:pk>/boxes/<str:side>/history/", viewer.BoxHistory.as_view(), name="api-box-history"),
    path("series/<int:pk>/findings/", findings.Findings.as_view(), name="api-findings"),
    path("series/<int:pk>/findings/<str:side>/", findings.FindingSide.as_view(), name="api-finding"),
    path("series/<int:pk>/findings/<str:side>/history/", findings.FindingHistory.as_view(),
         name="api-finding-history"),
    path("series/<int:pk>/findings/<str:side>/restore/", findings.FindingRestore.as_view(),
         name="api-finding-restore"),
    path("datasets/<int:pk>/findings/", findings.DatasetFindings.as_view(), name="api-dataset-findings"),
]
