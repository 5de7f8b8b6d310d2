"""API of verdicts beyond submission (``dashboard.PredictionList``): evidence thumbnails of a verdict, and
"judge every scan of this dataset" (leads)."""
from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.api_params import int_param
from adrenal_site.parsers import JSON_ONLY
from adrenal_site.roles import IsClinician, IsLead
from annotations.models import Dataset

from ..services.evidence import THUMB_PX, thumbnail_path
from ..services.runs import RunUnavailable
from ..tasks import JudgingBusy, start_judge_dataset
from .dashboard import visible_predictions
from .serializers import JudgeStart


class PredictionEvidence(APIView):
    """GET evidence map ``n`` of a verdict over its CT slice as a PNG (``?size=`` px, 48..256, default 96)."""

    permission_classes = [IsClinician]

    def get(self, request, pk: int, n: int):
        p = get_object_or_404(visible_predictions(request.user).select_related("series__volume"), pk=pk)
        size = int_param(request, "size", 96, min_value=THUMB_PX[0], max_value=THUMB_PX[1])
        try:
            path = thumbnail_path(p, n, size)
        except IndexError as exc:
            raise NotFound(str(exc)) from exc
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        response = FileResponse(open(path, "rb"), content_type="image/png")
        response["Cache-Control"] = "private, max-age=3600"
        return response


class DatasetJudge(APIView):
    """POST ``{"force": false, "run": id}``: judge every scan of the dataset with its promoted model (or
    ``run``) in one job; scans that model judged before are skipped unless ``force``. 202 with the job (the
    one already queued or running for this dataset when it does the same); 409 naming the job queued or running
    for this dataset with another model (or not forced when ``force`` is asked); 400 naming what is missing."""

    permission_classes = [IsLead]
    parser_classes = JSON_ONLY

    def post(self, request, pk: int):
        dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
        if not isinstance(request.data, dict):
            raise ValidationError({"detail": "send a JSON object such as {\"force\": false}"})
        form = JudgeStart(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            job = start_judge_dataset(dataset, request.user, run_id=form.validated_data.get("run"),
                                      force=form.validated_data["force"])
        except JudgingBusy as exc:
            return Response({"detail": str(exc), "job": exc.job.pk}, status=status.HTTP_409_CONFLICT)
        except RunUnavailable as exc:
            raise ValidationError({"run": [str(exc)]}) from exc
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response({"job": job.pk, "dataset": dataset.pk, "run": job.params.get("run_id"),
                         "force": job.params.get("force")}, status=status.HTTP_202_ACCEPTED)
