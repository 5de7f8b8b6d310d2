"""API views for runs (leads)."""
from rest_framework import generics

from adrenal_site.roles import IsLead

from .models import TrainingRun
from .serializers import TrainingRunSerializer


class RunList(generics.ListAPIView):
    serializer_class = TrainingRunSerializer
    permission_classes = [IsLead]
    queryset = TrainingRun.objects.all()
