"""Lead pages of training runs: the list with a start form, a run's page (folds live, learning curves),
cancel and promote."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from adrenal_site.jobs.models import Job
from adrenal_site.roles import LEAD, role_required
from annotations.models import Dataset

from ..api.runs import run_document, visible_runs
from ..ml.presets import PRESETS, SETTINGS
from ..services.runs import cancel_run, promote
from ..tasks import start_images, start_run


class StartRunForm(forms.Form):
    dataset = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    preset = forms.ChoiceField(choices=[(p, p) for p in PRESETS], required=False)
    epochs = forms.IntegerField(min_value=SETTINGS["epochs"].lo, max_value=SETTINGS["epochs"].hi, required=False)
    name = forms.CharField(max_length=200, required=False)


class BuildImagesForm(forms.Form):
    dataset = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    use_proposed = forms.BooleanField(required=False)


def _form_error(form: forms.Form) -> str:
    """The first problem of a bound form, naming its field."""
    field, errors = next(iter(form.errors.items()))
    return f"{field}: {errors[0]}"


@role_required(LEAD)
def runs(request: HttpRequest) -> HttpResponse:
    """Runs (the model registry) and, for POST, start a run."""
    datasets = Dataset.objects.visible_to(request.user).order_by("name")
    if request.method == "POST":
        form = StartRunForm(request.POST)
        if not form.is_valid():
            messages.error(request, _form_error(form))
            return redirect("runs")
        data = form.cleaned_data
        dataset = get_object_or_404(datasets, pk=data["dataset"])
        overrides = {"epochs": data["epochs"]} if data.get("epochs") else {}
        try:
            run = start_run(dataset, data.get("preset") or "fast", request.user, overrides, name=data.get("name") or "")
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("runs")
        return redirect("run-detail", pk=run.pk)
    image_jobs = Job.objects.visible_to(request.user).filter(kind="images25d").order_by("-created_at")[:5]
    return render(request, "inference/training/runs.html",
                  {"runs": visible_runs(request.user), "datasets": datasets, "presets": list(PRESETS),
                   "epochs_range": SETTINGS["epochs"],
                   "image_jobs": image_jobs})


@role_required(LEAD)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    return render(request, "inference/training/run.html", {"run": run, "doc": run_document(run, request)})


@role_required(LEAD)
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    if not run.is_active:  # as the API's 409: nothing to stop
        messages.warning(request, f"Run {pk} is already {run.status}.")
        return redirect("run-detail", pk=pk)
    cancel_run(run, by=request.user)
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
    form = BuildImagesForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_error(form))
        return redirect("runs")
    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=form.cleaned_data["dataset"])
    job = start_images(dataset=dataset, use_proposed=form.cleaned_data["use_proposed"], user=request.user)
    messages.info(request, f"Building the 2.5D images of {dataset.name} (job {job.pk}).")
    return redirect("runs")
