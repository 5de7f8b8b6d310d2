"""A job's page: live progress, message and error."""
from django.shortcuts import get_object_or_404, render

from adrenal_site.roles import CLINICIAN, role_required

from .api import jobs_visible_to


@role_required(CLINICIAN)
def job_detail(request, pk: int):
    job = get_object_or_404(jobs_visible_to(request.user), pk=pk)
    return render(request, "jobs/job_detail.html", {"job": job})
