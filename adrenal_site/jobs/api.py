"""Jobs through the API: every role may follow the jobs it can see (``Job.objects.visible_to``: the jobs of
datasets it is a member of and the ones it started; admins all); leads cancel those same jobs only."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.api_params import choice_param
from adrenal_site.api_schema import DETAIL, query_parameters
from adrenal_site.roles import IsClinician, IsLead

from .models import Job
from .runner import JOB_KINDS, request_cancel
from .serializers import JobSerializer


def jobs_visible_to(user):
    """``Job.objects.visible_to(user)`` with what the list shows (every list, page and action uses it)."""
    return Job.objects.visible_to(user).select_related("created_by")


@extend_schema_view(get=extend_schema(parameters=query_parameters(
    {"status": Job.Status.values}, kind="one of the kinds the tasks declare, e.g. import, train, predict")))
class JobList(generics.ListAPIView):
    """Jobs you may see, newest first: ``?kind=`` (one of the kinds the tasks declare, e.g. import, train,
    predict) and ``?status=`` (queued, running, succeeded, failed, cancelled); another value is a 400 naming
    the parameter and the values it takes."""

    serializer_class = JobSerializer
    permission_classes = [IsClinician]

    def get_queryset(self):
        qs = jobs_visible_to(self.request.user)
        for field, choices in (("kind", sorted(JOB_KINDS)), ("status", Job.Status.values)):
            if value := choice_param(self.request, field, choices):
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

    @extend_schema(request=None, responses={202: JobSerializer, 409: DETAIL})
    def post(self, request, pk: int):
        job = generics.get_object_or_404(jobs_visible_to(request.user), pk=pk)
        if not job.is_active:
            return Response({"detail": f"Job {pk} is already {job.status}."}, status=status.HTTP_409_CONFLICT)
        request_cancel(job, by=request.user)
        job.refresh_from_db()
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
