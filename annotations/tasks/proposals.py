"""The proposal job (cpu queue): crop boxes for every scan of a dataset, or for given series."""
from __future__ import annotations

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import Progress, enqueue, job_task

KIND = "propose_crops"


@job_task(queue="cpu")
def propose_crops(job: Job, dataset_id: int | None = None, series_ids: list[int] | None = None,
                  masks: str | None = None) -> dict:
    """Propose both boxes per scan; confirmed boxes are kept; a rerun gives the same result."""
    from annotations.proposals import propose_series, scans_of

    if dataset_id is None and not series_ids:
        raise ValueError("give a dataset_id or series_ids")
    return propose_series(scans_of(dataset_id, series_ids), masks=masks, progress=Progress(job))


def start_proposals(*, dataset=None, series_ids: list[int] | None = None, masks: str | None = None, user=None,
                    send: bool = True) -> Job:
    """Queue a proposal job (after commit). ``send=False`` only makes the Job row, to run it in this process."""
    params = {"dataset_id": dataset.pk if dataset else None, "series_ids": list(series_ids or []) or None,
              "masks": str(masks) if masks else None}
    if not send:
        return Job.objects.create(kind=KIND, task_name=propose_crops.name, queue=propose_crops.queue_name,
                                  params=params, created_by=user if getattr(user, "is_authenticated", False) else None)
    return enqueue(propose_crops, kind=KIND, params=params, user=user)
