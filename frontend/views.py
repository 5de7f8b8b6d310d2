"""The home page: the datasets a user can see, with counts and recent jobs."""
from django.db.models import Count, Q
from django.shortcuts import render

from adrenal_site.jobs.api import jobs_visible_to
from adrenal_site.roles import CLINICIAN, role_required
from annotations.models import Dataset


@role_required(CLINICIAN)
def home(request):
    datasets = Dataset.objects.visible_to(request.user).annotate(
        n_patients=Count("patients", distinct=True),
        n_scans=Count("patients__studies__series", filter=Q(patients__studies__series__is_scan=True), distinct=True),
    )
    jobs = jobs_visible_to(request.user)[:10]
    return render(request, "frontend/home.html", {"datasets": datasets, "jobs": jobs})
