"""Lead pages: training runs and the model registry."""
from django.shortcuts import render

from adrenal_site.roles import LEAD, role_required

from .models import TrainingRun


@role_required(LEAD)
def runs(request):
    return render(request, "inference/runs.html", {"runs": TrainingRun.objects.select_related("dataset")})
