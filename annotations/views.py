"""Pages: worklist per dataset (the viewer and import pages arrive with their issues)."""
from django.shortcuts import get_object_or_404, render

from adrenal_site.roles import CLINICIAN, role_required

from .models import Dataset, Series


@role_required(CLINICIAN)
def worklist(request, pk: int):
    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
    series = Series.objects.filter(study__patient__dataset=dataset, is_scan=True).select_related("study__patient")
    return render(request, "annotations/worklist.html", {"dataset": dataset, "series": series})
