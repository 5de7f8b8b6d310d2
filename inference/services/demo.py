"""The demo pipeline job (cpu queue) that `make run` queues after importing the demo cohort: propose
boxes for every scan, build 2.5D images from the proposals, and start a `fast` training run marked
``auto_promote``; the run is evaluated when it finishes (``tasks.evaluation``) and then promoted, so the
dashboards fill without anyone clicking."""
from __future__ import annotations

from adrenal_site.jobs.runner import Progress, enqueue, job_task

KIND = "demo_pipeline"


@job_task(queue="cpu")
def demo_pipeline(job, dataset_id: int, preset: str = "fast", overrides: dict | None = None) -> dict:
    """Idempotent: proposals and images skip what is unchanged; a run is started only when the dataset has none."""
    from annotations.models import Dataset
    from annotations.proposals import propose_series, scans_of
    from inference.ml.images25d import image_config
    from inference.tasks.images import build_series
    from inference.training_service import start_run

    progress = Progress(job)
    dataset = Dataset.objects.get(pk=dataset_id)
    scans = list(scans_of(dataset_id, None))
    progress(1, "proposing crop boxes")
    proposed = propose_series(scans, progress=progress.sub(1, 40))
    cfg = image_config({})
    errors = []
    for i, series in enumerate(scans):
        progress(40 + 55 * i / max(len(scans), 1), f"2.5D images: scan {i + 1}/{len(scans)}")
        result = build_series(series, cfg, use_proposed=True)
        if "error" in result:
            errors.append(result)
    run = dataset.runs.order_by("pk").first()
    if run is None:
        progress(96, f"starting a {preset} training run")
        run = start_run(dataset, preset, overrides={**(overrides or {}), "auto_promote": True}, name="demo",
                        user=job.created_by)
    return {"proposals": len(proposed["series"]), "image_errors": errors, "run": run.pk}


def start_demo_pipeline(dataset, preset: str = "fast", user=None):
    return enqueue(demo_pipeline, kind=KIND, params={"dataset_id": dataset.pk, "preset": preset}, user=user)
