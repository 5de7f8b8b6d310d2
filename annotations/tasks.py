"""The import job (cpu queue): a folder or an uploaded zip into a dataset, resumable on a rerun."""
from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import Progress, enqueue, job_task

KIND = "import"


def upload_dir(job_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads" / f"job-{job_id}"


@job_task(queue="cpu")
def import_studies(job: Job, dataset_id: int, path: str = "", labels_csv: str | None = None,
                   zip_path: str | None = None, source: str = "") -> dict:
    """Import ``path`` (or the extracted ``zip_path``) into the dataset; a rerun of the job resumes its report."""
    from annotations.importer import import_path
    from annotations.models import Dataset, ImportReport
    from annotations.zipsafe import extract_zip

    progress = Progress(job)
    dataset = Dataset.objects.get(pk=dataset_id)
    report, _ = ImportReport.objects.get_or_create(job=job, defaults={"dataset": dataset,
                                                                      "source": (source or zip_path or path)[:1000]})
    if zip_path:
        progress(1, "extracting the upload")
        path = str(extract_zip(Path(zip_path), upload_dir(job.pk) / "files", settings.ADRENAL_MAX_UPLOAD_BYTES * 4))
    import_path(dataset, path, labels_csv=labels_csv, progress=progress.sub(2, 100) if zip_path else progress,
                user=job.created_by, report=report)
    imported = list(report.items.filter(status="imported", series__is_scan=True).values_list("series_id", flat=True))
    if imported and settings.ADRENAL_AUTO_PROPOSE:
        from annotations.tasks.proposals import start_proposals

        start_proposals(series_ids=sorted(set(imported)), user=job.created_by)  # every imported scan gets boxes
    if zip_path:  # imported: the volumes are stored, the upload and its extraction are not needed any more
        shutil.rmtree(upload_dir(job.pk), ignore_errors=True)
        shutil.rmtree(Path(zip_path).parent, ignore_errors=True)
    return {"report_id": report.pk, **report.counts()}


def start_import(dataset, path: str = "", *, labels_csv: str | None = None, zip_path: str | None = None,
                 source: str = "", user=None, send: bool = True) -> Job:
    """Queue an import job (sent once the surrounding transaction commits). With ``send=False`` only the Job
    row is made, for running it in this process (``run_job(import_studies.job_fn, job.pk)``)."""
    params = {"dataset_id": dataset.pk, "path": str(path), "labels_csv": str(labels_csv) if labels_csv else None,
              "zip_path": str(zip_path) if zip_path else None, "source": source}
    if not send:
        return Job.objects.create(kind=KIND, task_name=import_studies.name, queue=import_studies.queue_name,
                                  params=params, created_by=user if getattr(user, "is_authenticated", False) else None)
    return enqueue(import_studies, kind=KIND, params=params, user=user)
