"""Jobs through the API: every role may follow jobs it can see; leads cancel."""
from __future__ import annotations

from django.db.models import Q
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.roles import ADMIN, IsClinician, IsLead, has_role

from .models import Job
from .runner import request_cancel
from .serializers import JobSerializer


def jobs_visible_to(user):
    """Admins and leads see all jobs; clinicians see the jobs they started."""
    qs = Job.objects.select_related("created_by")
    if has_role(user, "lead") or has_role(user, ADMIN):
        return qs
    return qs.filter(Q(created_by=user))


class JobList(generics.ListAPIView):
    serializer_class = JobSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        qs = jobs_visible_to(self.request.user)
        for field in ("kind", "status"):
            if value := self.request.query_params.get(field):
                qs = qs.filter(**{field: value})
        return qs


class JobDetail(generics.RetrieveAPIView):
    serializer_class = JobSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        return jobs_visible_to(self.request.user)


class JobCancel(APIView):
    permission_classes = [IsLead]
    serializer_class = JobSerializer

    def post(self, request, pk: int):
        job = generics.get_object_or_404(Job, pk=pk)
        if not job.is_active:
            return Response({"detail": f"Job {pk} is already {job.status}."}, status=status.HTTP_409_CONFLICT)
        request_cancel(job)
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
