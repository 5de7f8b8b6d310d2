"""Signals the study store sends so that apps above it can react without being imported here.

- ``boxes_changed(sender=CropBox, series=Series, box=CropBox)``: a crop box of ``series`` was saved (sent by
  ``services.boxes.save_box`` after its transaction). ``inference`` rebuilds that scan's 2.5D images
  (``inference/signals.py``, connected in ``InferenceConfig.ready``).

Received here: ``adrenal_site.jobs.runner.job_ended``: a job's upload (the store's zip import, a prediction
upload) is removed when the job ends, whatever its outcome (``remove_job_upload``, connected in
``AnnotationsConfig.ready``), or when the job is deleted before it ended (``post_delete`` of a ``Job``:
``remove_deleted_job_upload``); ``post_delete`` of a ``Volume`` (its series, patient or dataset deleted, in the
admin or in code): its stored NIfTI and viewer copies are removed once the deletion commits
(``remove_volume_files``).
"""
from django.db import transaction
from django.dispatch import Signal

from .services.uploads import discard_upload
from .services.volume_cache import discard_volume_files

boxes_changed = Signal()


def remove_job_upload(sender=None, job=None, **_) -> None:
    """Remove the upload and extraction folders of ``job`` (``services.uploads.discard_upload``)."""
    if job is not None:
        discard_upload(job.pk, job.params or {})


def remove_deleted_job_upload(sender=None, instance=None, **_) -> None:
    """Remove the upload of a job deleted before it ended (a queued import or prediction deleted in the admin,
    or with its parent job), once the deletion commits: no ``job_ended`` is sent for it."""
    if instance is not None:
        pk, params = instance.pk, instance.params or {}
        transaction.on_commit(lambda: discard_upload(pk, params))


def remove_volume_files(sender=None, instance=None, **_) -> None:
    """Remove a deleted volume's files when its deletion commits (``services.volume_cache.discard_volume_files``)."""
    if instance is not None:
        pk, name = instance.pk, instance.file.name
        transaction.on_commit(lambda: discard_volume_files(pk, name))
