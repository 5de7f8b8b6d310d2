"""API of training runs (leads): list, detail with folds and history, start, cancel, promote."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import generics
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from adrenal_site.roles import IsLead
from annotations.models import Dataset

from ..ml.presets import ConfigError
from ..models import TrainingRun
from ..services.runs import cancel_run, promote, split_document
from ..tasks import start_run
from .serializers import RunStartSerializer, TrainingRunSerializer


def run_document(run: TrainingRun, request=None) -> dict:
    """A run with its split, folds and their per-epoch history (what the run page draws), as ``request``'s user
    may read it (``TrainingRunSerializer``: no server paths for non-admins)."""
    doc = TrainingRunSerializer(run, context={"request": request}).data
    doc |= {"dataset_name": run.dataset.name, "folds_done": run.folds_done, "job": run.job_id,
            "artifacts_dir": run.artifacts_dir,
            "split": split_document(run.split),
            "folds": [{"fold": f.fold, "status": f.status, "epoch": f.epoch, "best_epoch": f.best_epoch,
                       "val_loss": f.val_loss, "history": f.history, "job": f.job_id}
                      for f in run.folds.select_related("job", "run__job").order_by("fold")]}
    return doc


def visible_runs(user):
    return TrainingRun.objects.visible_to(user).select_related("dataset", "split", "job")


class RunList(generics.ListAPIView):
    serializer_class = TrainingRunSerializer
    permission_classes = [IsLead]

    def get_queryset(self):
        return visible_runs(self.request.user)


class RunDetail(APIView):
    permission_classes = [IsLead]

    def get(self, request, pk: int):
        return Response(run_document(get_object_or_404(visible_runs(request.user), pk=pk), request))


class RunStart(APIView):
    """POST ``{"dataset": id, "preset": "fast", "overrides": {...}, "name": ""}`` -> the new run (201). An override
    the preset does not allow or the run would not honour is a 400 ``{"overrides": ["mil.top_k: ..."]}`` naming
    its field (``presets.ConfigError``), and nothing is created."""

    permission_classes = [IsLead]

    def post(self, request):
        form = RunStartSerializer(data=request.data if isinstance(request.data, dict) else {"dataset": None})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        dataset = Dataset.objects.visible_to(request.user).filter(pk=data["dataset"]).first()
        if dataset is None:  # an id in the body, not the path: a field error naming it, as for a verdict
            raise ValidationError({"dataset": [f"no dataset {data['dataset']} you may see"]})
        try:
            run = start_run(dataset, data["preset"], request.user, data["overrides"], name=data["name"])
        except ConfigError as exc:
            return Response({"overrides": [str(exc)]}, status=400)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response(run_document(run, request), status=201)


class RunCancel(APIView):
    """Stop a queued or running run (its job and every fold job, through the runner's one cancel path): 202 with
    the run, which reads cancelled once its jobs stop. A run that has finished answers 409 naming its state, as
    ``POST /api/jobs/<id>/cancel/`` does for a finished job."""

    permission_classes = [IsLead]

    def post(self, request, pk: int):
        run = get_object_or_404(visible_runs(request.user), pk=pk)
        if not run.is_active:
            return Response({"detail": f"Run {pk} is already {run.status}."}, status=409)
        cancel_run(run, by=request.user)
        return Response(run_document(visible_runs(request.user).get(pk=pk), request), status=202)


class RunPromote(APIView):
    permission_classes = [IsLead]

    def post(self, request, pk: int):
        run = get_object_or_404(visible_runs(request.user), pk=pk)
        try:
            promote(run)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(run_document(visible_runs(request.user).get(pk=pk), request))
