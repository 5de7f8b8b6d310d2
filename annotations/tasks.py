"""Jobs of the study store, thin wrappers around ``annotations.services``:

1. ``import`` (cpu): a folder or an uploaded zip into a dataset (``services.importer``); it queues
2. ``prepare_viewer`` (cpu) for the scans it brought in: the viewer's slabs (``services.volume_cache``), so a
   scan never opened before shows its first image at once, and
3. ``propose_crops`` (cpu) for the same scans (``services.proposals``), unless asked not to.

The 2.5D images, training, evaluation and verdicts that follow are ``inference.tasks``.
"""
from __future__ import annotations


from django.conf import settings

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import Progress, enqueue, job_task
from adrenal_site.storage import local_path, location_for_task, resolve_location, storage_name

from .models import Dataset, ImportReport, Series, Volume, dataset_of_series
from .services.importer import import_path
from .services.proposals import propose_series, scans_of
from .services.uploads import discard_upload, extract_zip, upload_dir
from .services.volume_cache import prepare_viewer_data


@job_task("import", queue="cpu")
def import_studies(job: Job, dataset_id: int, path: str = "", labels_csv: str | None = None,
                   zip_path: str | None = None, source: str = "", propose: bool = True) -> dict:
    """Import ``path`` (or the extracted ``zip_path``) into the dataset; a rerun of the job resumes its report.
    ``zip_path`` is a storage name (an upload); ``path`` and ``labels_csv`` are storage names or, for a folder
    outside the store, absolute paths (``adrenal_site.storage.location_for_task``), resolved on this host."""
    progress = Progress(job)
    dataset = Dataset.objects.get(pk=dataset_id)
    report, _ = ImportReport.objects.get_or_create(job=job, defaults={"dataset": dataset,
                                                                      "source": (source or zip_path or path)[:1000]})
    upload = local_path(zip_path) if zip_path else None
    if upload is not None:
        progress(1, "extracting the upload")
        folder = extract_zip(upload, upload_dir(job.pk) / "files")
    else:
        folder = resolve_location(path)
    import_path(dataset, folder, labels_csv=resolve_location(labels_csv) if labels_csv else None,
                progress=progress.sub(2, 100) if zip_path else progress, user=job.created_by, report=report)
    imported = sorted(set(report.items.filter(status="imported", series__is_scan=True)
                          .values_list("series_id", flat=True)))
    # scans found already imported whose boxes were never proposed (an earlier import stopped before it queued
    # them): importing them again finishes what that import left undone
    left = set(report.items.filter(status="skipped", series__is_scan=True, series__box_status=Series.BoxStatus.NONE,
                                   series__boxes__isnull=True).values_list("series_id", flat=True))
    if left:  # not those a proposal job is still queued or running for
        for params in Job.objects.filter(kind="propose_crops", status__in=Job.ACTIVE).values_list("params", flat=True):
            params = params or {}
            if params.get("series_ids"):
                left -= set(params["series_ids"])
            elif params.get("dataset_id") == dataset.pk:
                left = set()
    scans = sorted(set(imported) | left)
    if scans:
        start_viewer_preparation(scans, user=job.created_by)
    if scans and propose and settings.ADRENAL_AUTO_PROPOSE:
        start_proposals(series_ids=scans, user=job.created_by)  # every imported scan gets boxes
    if zip_path:  # imported: the volumes are stored, the upload and its extraction are not needed any more
        discard_upload(job.pk, job.params)  # (a failed or cancelled import's: annotations.signals.remove_job_upload)
    counts = report.counts()
    rest = f"{counts['skipped']} skipped, {counts['failed']} failed"
    progress(100, f"{counts['imported']} series imported, {rest}" if counts["imported"]
             else f"nothing imported: {rest} (the import report gives each reason)")
    return {"report_id": report.pk, **counts}


@job_task("propose_crops", queue="cpu")
def propose_crops(job: Job, dataset_id: int | None = None, series_ids: list[int] | None = None,
                  masks: str | None = None) -> dict:
    """Propose both boxes per scan; confirmed boxes are kept; a rerun gives the same result. ``masks``: a
    storage name or an absolute path (``adrenal_site.storage.location_for_task``)."""
    if dataset_id is None and not series_ids:
        raise ValueError("give a dataset_id or series_ids")
    return propose_series(scans_of(dataset_id, series_ids), masks=str(resolve_location(masks)) if masks else None,
                          progress=Progress(job))


@job_task("prepare_viewer", queue="cpu")
def prepare_viewer(job: Job, series_ids: list[int]) -> dict:
    """Write the viewer's slabs of each scan's volume (prepared ones are skipped; a failed one is reported and
    the others go on)."""
    progress = Progress(job)
    volumes = list(Volume.objects.filter(series_id__in=series_ids).order_by("series_id"))
    done, failed = [], []
    for n, volume in enumerate(volumes):
        try:
            prepare_viewer_data(volume)
            done.append(volume.series_id)
        except Exception as exc:  # noqa: BLE001 - a scan that cannot be read (a corrupt stored file too) is reported
            failed.append({"series": volume.series_id, "error": f"{type(exc).__name__}: {exc}"[:300]})
        progress(100 * (n + 1) / len(volumes), f"viewer data of {n + 1}/{len(volumes)} scans")
    return {"prepared": done, "failed": failed}


def start_viewer_preparation(series_ids: list[int], *, user=None, send: bool = True) -> Job:
    """Queue the viewer's data preparation for these scans (after commit)."""
    return enqueue(prepare_viewer, params={"series_ids": sorted(series_ids)}, user=user, send=send,
                   dataset=dataset_of_series(series_ids))


def start_import(dataset: Dataset, path: str = "", *, labels_csv: str | None = None, zip_path: str | None = None,
                 source: str = "", user=None, propose: bool = True, send: bool = True) -> Job:
    """Queue an import job (sent once the surrounding transaction commits); ``send=False`` only makes the Job
    row, to run it in this process (``run_now(import_studies, job)``). ``zip_path`` (an upload saved under
    ``new_upload_folder()``) must lie in the shared storage; the message carries storage names, so a worker on
    another host finds the files under its own mount (raises ``StorageNameError`` for a zip outside it)."""
    params = {"dataset_id": dataset.pk, "path": location_for_task(path) if path else "",
              "labels_csv": location_for_task(labels_csv) if labels_csv else None,
              "zip_path": storage_name(zip_path) if zip_path else None,
              "source": str(source)[:1000] if source else "", "propose": propose}
    return enqueue(import_studies, params=params, user=user, send=send, dataset=dataset)


def start_proposals(*, dataset: Dataset | None = None, series_ids: list[int] | None = None, masks: str | None = None,
                    user=None, send: bool = True) -> Job:
    """Queue a proposal job (after commit); ``send=False`` only makes the Job row, to run it in this process."""
    params = {"dataset_id": dataset.pk if dataset else None, "series_ids": list(series_ids or []) or None,
              "masks": location_for_task(masks) if masks else None}
    return enqueue(propose_crops, params=params, user=user, send=send,
                   dataset=dataset or dataset_of_series(series_ids or []))
