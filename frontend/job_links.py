"""What each job on the home page is about, as a link: its import report, run, prediction or dataset.

``job_targets(jobs, user)`` -> ``{job_id: (text, url)}``, reading only the job's own params (``run_id``,
``dataset_id``, ``series_id``/``series_ids``, ``prediction_id``) and the import report or prediction that holds
the job; pages the user's role cannot open fall back to the dataset's worklist.
"""
from __future__ import annotations

from django.urls import reverse

from adrenal_site.roles import ADMIN, LEAD, has_role
from annotations.models import Dataset, ImportReport, Series
from inference.models import Prediction, TrainingRun


def job_targets(jobs, user) -> dict[int, tuple[str, str]]:
    jobs = list(jobs)
    ids = [j.pk for j in jobs]
    reports = {r.job_id: r for r in ImportReport.objects.filter(job_id__in=ids).select_related("dataset")}
    predictions = {p.job_id: p for p in Prediction.objects.filter(job_id__in=ids).select_related("series")}
    params = [j.params if isinstance(j.params, dict) else {} for j in jobs]

    def ints(key: str) -> set[int]:
        return {p[key] for p in params if isinstance(p.get(key), int)}

    runs = TrainingRun.objects.in_bulk(ints("run_id"))
    series_ids = ints("series_id") | {s for p in params for s in (p.get("series_ids") or [])[:1] if isinstance(s, int)}
    series = {s.pk: s for s in Series.objects.filter(pk__in=series_ids).select_related("study__patient")}
    more_predictions = Prediction.objects.in_bulk(ints("prediction_id"))
    visible = dict(Dataset.objects.visible_to(user).values_list("pk", "name"))
    is_admin, is_lead = has_role(user, ADMIN), has_role(user, LEAD)

    def dataset_link(dataset_id):
        if dataset_id in visible:
            return f"dataset {visible[dataset_id]}", reverse("worklist", args=[dataset_id])
        return None

    out: dict[int, tuple[str, str]] = {}
    for job, p in zip(jobs, params):
        link = None
        if job.pk in reports:
            report = reports[job.pk]
            link = ((f"import #{report.pk}", reverse("store-import-report", args=[report.pk])) if is_admin
                    else dataset_link(report.dataset_id))
        elif job.pk in predictions or p.get("prediction_id") in more_predictions:
            pred = predictions.get(job.pk) or more_predictions[p["prediction_id"]]
            if pred.series.study.patient.dataset_id in visible:
                link = (f"prediction #{pred.pk}", reverse("viewer", args=[pred.series_id]))
        elif p.get("run_id") in runs:
            run = runs[p["run_id"]]
            link = ((f"run #{run.pk}", reverse("run-detail", args=[run.pk])) if is_lead
                    else dataset_link(run.dataset_id))
        elif isinstance(p.get("dataset_id"), int):
            link = dataset_link(p["dataset_id"])
        else:
            first = p.get("series_id") or next(iter(p.get("series_ids") or []), None)
            if first in series:
                link = dataset_link(series[first].study.patient.dataset_id)
        if link:
            out[job.pk] = link
    return out
