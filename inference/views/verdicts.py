"""Verdict pages (clinicians and leads): submit a study (an upload, or a scan already imported) and follow
it to its verdict; every submission of the user stays listed and openable."""
from __future__ import annotations

from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from adrenal_site.jobs.api import jobs_visible_to
from adrenal_site.jobs.models import Job
from adrenal_site.jobs.public import public_text
from adrenal_site.roles import CLINICIAN, role_required
from annotations.models import Dataset, Series
from annotations.services.uploads import UploadRefused

from ..api.serializers import PredictionSubmission
from ..models import Prediction, TrainingRun
from ..services.verdicts import verdict_document
from ..tasks import submit_prediction

MAX_SCANS_LISTED = 2000


def _scan_choices(user) -> list[tuple[str, list[tuple[int, str]]]]:
    """Scans the user may pick, grouped by dataset: ``[(dataset name, [(series id, label), ...]), ...]``."""
    groups: dict[str, list] = {}
    qs = (Series.objects.filter(is_scan=True, study__patient__dataset__in=Dataset.objects.visible_to(user))
          .select_related("study__patient__dataset").order_by("study__patient__dataset__name",
                                                              "study__patient__pseudo_id", "pk"))
    for s in qs[:MAX_SCANS_LISTED]:
        p = s.study.patient
        groups.setdefault(p.dataset.name, []).append((s.pk, f"{p.pseudo_id} · {s.series_description or s.series_uid}"))
    return list(groups.items())


def _submissions(user, limit: int = 30) -> list[dict]:
    """The user's submitted verdict jobs, newest first, with their verdicts where made: those they may still see
    (``Job.objects.visible_to``; one removed from a dataset no longer lists what they asked for there)."""
    jobs = list(jobs_visible_to(user).filter(created_by=user, kind="predict", parent=None).order_by("-pk")[:limit])
    predictions = {p.job_id: p for p in Prediction.objects.visible_to(user).filter(job__in=jobs)
                   .select_related("series__study__patient")}
    rows = []
    for job in jobs:
        p = predictions.get(job.pk)
        source = Path(job.params.get("path") or "").name if job.params.get("path") else ""
        if p is not None:
            source = source or f"{p.series.study.patient.pseudo_id} · series {p.series_id}"
        elif job.params.get("series_id"):
            source = f"series {job.params['series_id']}"
        rows.append({"job": job, "prediction": p, "source": source})
    return rows


@role_required(CLINICIAN)
def submit(request: HttpRequest) -> HttpResponse:
    """GET: the submission form and the user's submissions; POST: queue a verdict (a multipart ``file`` with
    an optional ``dataset``, or ``series``) and go to its page. Refused input re-renders the form (400)."""
    datasets = Dataset.objects.visible_to(request.user).order_by("name")
    error = ""
    if request.method == "POST":
        form = PredictionSubmission(data={k: v for k, v in (("series", request.POST.get("series")),
                                                            ("dataset", request.POST.get("dataset")),
                                                            ("file", request.FILES.get("file"))) if v})
        if not form.is_valid():  # the API's own checks, so both answer alike
            error = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in form.errors.items())
        else:
            data = form.validated_data
            try:
                job = submit_prediction(request.user, series_id=data.get("series"), upload=data.get("file"),
                                        dataset_id=data.get("dataset"))
            except Series.DoesNotExist:
                error = f"series: no scan {data.get('series')} you may see"
            except (ValueError, UploadRefused, TrainingRun.DoesNotExist) as exc:
                error = str(exc) or type(exc).__name__
            else:
                return redirect("verdict-job", pk=job.pk)
    selected = request.GET.get("series", "")
    context = {"datasets": datasets, "scans": _scan_choices(request.user), "selected": selected, "error": error,
               "submissions": _submissions(request.user)}
    return render(request, "inference/verdicts/submit.html", context, status=400 if error else 200)


@role_required(CLINICIAN)
def verdict_job(request: HttpRequest, pk: int) -> HttpResponse:
    """A submission followed to its verdict: live progress while it runs, then each verdict it made with
    per-side findings, evidence and the model; or why there is none."""
    job = get_object_or_404(jobs_visible_to(request.user).filter(kind__in=("predict", "judge_dataset")), pk=pk)
    predictions = [verdict_document(p) | {"patient": p.series.study.patient.pseudo_id}
                   for p in Prediction.objects.filter(job=job).select_related("run__dataset", "series__study__patient")
                   .order_by("pk")]
    # the job's own reason as the user may read it (no server paths for non-admins, as the job's API gives it)
    reason = public_text(str((job.result or {}).get("reason", "")), request.user) if not predictions else ""
    return render(request, "inference/verdicts/job.html", {"job": job, "predictions": predictions, "reason": reason,
                                                          "finished": job.status in Job.FINISHED})
