"""API views of the study store and annotation."""
from rest_framework import generics

from adrenal_site.roles import IsClinician

from .models import Dataset
from .serializers import DatasetSerializer


class DatasetList(generics.ListAPIView):
    serializer_class = DatasetSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user)
