"""Pages of the study store and annotation."""
from django.urls import path

from . import views

urlpatterns = [
    path("datasets/<int:pk>/", views.worklist, name="worklist"),
]
