"""The verdict job (gpu queue): judge an imported series, or a submitted path, with a model."""
from __future__ import annotations

from adrenal_site.jobs.runner import Progress, job_task


@job_task(queue="gpu")
def predict_job(job, run_id: int | None = None, series_id: int | None = None, path: str | None = None,
                dataset_id: int | None = None) -> dict:
    """Idempotent: the Prediction is keyed by this job, so a re-delivery updates it."""
    from annotations.models import Dataset, Series
    from inference.prediction import predict_path, predict_series, resolve_run

    progress = Progress(job)
    if series_id is not None:
        series = Series.objects.select_related("study__patient__dataset").get(pk=series_id)
        run = resolve_run(run_id, series.study.patient.dataset)
        p = predict_series(series, run, job=job, user=job.created_by, progress=progress)
        return {"prediction": p.pk, "verdict": p.verdict, "probability": p.probability, "reason": p.reason}
    if not path:
        raise ValueError("a predict job needs series_id or path")
    dataset = Dataset.objects.filter(pk=dataset_id).first() if dataset_id else None
    run = resolve_run(run_id, dataset)
    return predict_path(path, run, job=job, user=job.created_by, dataset=dataset, progress=progress)
