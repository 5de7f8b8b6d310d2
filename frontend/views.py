"""The home page: the datasets a user can see, with counts and recent jobs; for admins, the DICOM node's queue
and last activity."""
from django.db.models import Count, Q
from django.shortcuts import render

from adrenal_site.jobs.api import jobs_visible_to
from adrenal_site.roles import ADMIN, CLINICIAN, has_role, role_required
from annotations.models import Dataset
from inference.services.dicom_node.status import node_summary

from .job_links import job_targets


@role_required(CLINICIAN)
def home(request):
    datasets = Dataset.objects.visible_to(request.user).annotate(
        n_patients=Count("patients", distinct=True),
        n_scans=Count("patients__studies__series", filter=Q(patients__studies__series__is_scan=True), distinct=True),
    )
    jobs = list(jobs_visible_to(request.user)[:10])
    targets = job_targets(jobs, request.user)
    rows = [{"job": j, "target": targets.get(j.pk)} for j in jobs]
    node = node_summary() if has_role(request.user, ADMIN) else None
    return render(request, "frontend/home.html", {"datasets": datasets, "jobs": rows, "node": node})
