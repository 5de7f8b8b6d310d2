"""Lead pages of training runs: the list with a start form, a run's page (folds live, learning curves),
cancel and promote."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from adrenal_site.jobs.models import Job
from adrenal_site.roles import LEAD, role_required
from annotations.models import Dataset

from ..api.runs import run_document, visible_runs
from ..ml.presets import PRESETS
from ..services.runs import cancel_run, promote
from ..tasks import start_images, start_run


@role_required(LEAD)
def runs(request: HttpRequest) -> HttpResponse:
    """Runs (the model registry) and, for POST, start a run."""
    datasets = Dataset.objects.visible_to(request.user).order_by("name")
    if request.method == "POST":
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
    image_jobs = Job.objects.visible_to(request.user).filter(kind="images25d").order_by("-created_at")[:5]
    return render(request, "inference/training/runs.html",
                  {"runs": visible_runs(request.user), "datasets": datasets, "presets": list(PRESETS),
                   "image_jobs": image_jobs})


@role_required(LEAD)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    return render(request, "inference/training/run.html", {"run": run, "doc": run_document(run)})


@role_required(LEAD)
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    cancel_run(get_object_or_404(visible_runs(request.user), pk=pk))
    messages.info(request, f"Run {pk} cancelled.")
    return redirect("run-detail", pk=pk)


@role_required(LEAD)
@require_POST
def run_promote(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user), pk=pk)
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
    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=request.POST.get("dataset"))
    job = start_images(dataset=dataset, use_proposed=bool(request.POST.get("use_proposed")), user=request.user)
    messages.info(request, f"Building the 2.5D images of {dataset.name} (job {job.pk}).")
    return redirect("runs")
