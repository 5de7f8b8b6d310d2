"""Pages of the study store and annotation."""
from django.urls import path

from . import views, views_store

urlpatterns = [
    path("datasets/<int:pk>/", views.worklist, name="worklist"),
    path("series/<int:pk>/", views.viewer, name="viewer"),  # CT viewer (h4)
    # study store (h2)
    path("store/", views_store.dataset_list, name="store-datasets"),
    path("store/datasets/new/", views_store.dataset_edit, name="store-dataset-new"),
    path("store/datasets/<int:pk>/", views_store.dataset_detail, name="store-dataset"),
    path("store/datasets/<int:pk>/edit/", views_store.dataset_edit, name="store-dataset-edit"),
    path("store/datasets/<int:pk>/import/", views_store.dataset_import, name="store-dataset-import"),
    path("store/imports/<int:pk>/", views_store.import_report, name="store-import-report"),
    path("store/patients/<int:pk>/labels/", views_store.patient_labels, name="store-patient-labels"),
]
