"""Pages of the study store and annotation."""
from django.urls import path

from .views import store, viewer

urlpatterns = [
    path("datasets/<int:pk>/", viewer.worklist, name="worklist"),
    path("series/<int:pk>/", viewer.viewer, name="viewer"),
    path("store/", store.dataset_list, name="store-datasets"),
    path("store/datasets/new/", store.dataset_edit, name="store-dataset-new"),
    path("store/datasets/<int:pk>/", store.dataset_detail, name="store-dataset"),
    path("store/datasets/<int:pk>/edit/", store.dataset_edit, name="store-dataset-edit"),
    path("store/datasets/<int:pk>/import/", store.dataset_import, name="store-dataset-import"),
    path("store/datasets/<int:pk>/judge/", store.dataset_judge, name="store-dataset-judge"),
    path("store/imports/<int:pk>/", store.import_report, name="store-import-report"),
    path("store/patients/<int:pk>/labels/", store.patient_labels, name="store-patient-labels"),
]
