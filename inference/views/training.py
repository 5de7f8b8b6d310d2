"""Lead pages of training runs: the list with a start form, a run's page (folds live, learning curves),
cancel and promote."""
from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from adrenal_site.roles import LEAD, role_required

from .ml.presets import PRESETS
from .models import TrainingRun


def _visible(user):
    from annotations.models import Dataset

    return TrainingRun.objects.filter(dataset__in=Dataset.objects.visible_to(user)).select_related("dataset")


@role_required(LEAD)
def runs(request: HttpRequest) -> HttpResponse:
    """Runs (the model registry) and, for POST, start a run."""
    from annotations.models import Dataset

    datasets = Dataset.objects.visible_to(request.user).order_by("name")
    if request.method == "POST":
        from .training_service import start_run

        dataset = get_object_or_404(datasets, pk=request.POST.get("dataset"))
        overrides = {}
        if request.POST.get("epochs"):
            try:
                overrides["epochs"] = max(1, int(request.POST["epochs"]))
            except ValueError:
                messages.error(request, "Epochs must be a whole number.")
                return redirect("runs")
        try:
            run = start_run(dataset, request.POST.get("preset", "fast"), request.user, overrides,
                            name=request.POST.get("name", "")[:200])
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("runs")
        return redirect("run-detail", pk=run.pk)
    from adrenal_site.jobs.models import Job

    image_jobs = Job.objects.filter(kind="images25d").order_by("-created_at")[:5]
    return render(request, "inference/training/runs.html",
                  {"runs": _visible(request.user), "datasets": datasets, "presets": list(PRESETS),
                   "image_jobs": image_jobs})


@role_required(LEAD)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    from .api import run_document

    run = get_object_or_404(_visible(request.user).select_related("split"), pk=pk)
    return render(request, "inference/training/run.html",
                  {"run": run, "doc_json": json.dumps(run_document(run), default=str)})


@role_required(LEAD)
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    from .training_service import cancel_run

    cancel_run(get_object_or_404(_visible(request.user), pk=pk))
    messages.info(request, f"Run {pk} cancelled.")
    return redirect("run-detail", pk=pk)


@role_required(LEAD)
@require_POST
def run_promote(request: HttpRequest, pk: int) -> HttpResponse:
    from .training_service import promote

    run = get_object_or_404(_visible(request.user), pk=pk)
    try:
        promote(run)
        messages.info(request, f"Model version {run.version} of {run.dataset} promoted for inference.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("run-detail", pk=pk)


@role_required(LEAD)
@require_POST
def images_build(request: HttpRequest) -> HttpResponse:
    """Queue the 2.5D image job for a dataset (confirmed boxes, or proposed ones when asked)."""
    from annotations.models import Dataset

    from .tasks.images import start_images

    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=request.POST.get("dataset"))
    job = start_images(dataset=dataset, use_proposed=bool(request.POST.get("use_proposed")), user=request.user)
    messages.info(request, f"Building the 2.5D images of {dataset.name} (job {job.pk}).")
    return redirect("runs")
