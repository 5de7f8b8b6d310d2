"""How inference hooks into the study store below it, which must not import it (``connect_to_store``, called
from ``InferenceConfig.ready``):

- a changed crop box (``annotations.signals.boxes_changed``) rebuilds its scan's 2.5D images;
- the worklist and the viewer read verdicts from ``services.verdicts.SOURCE``, and the store's dataset page
  offers "judge every scan of this dataset" through it (``tasks.start_judge_dataset``, as the API does);
- a deleted 2.5D image, run or verdict (its series, patient or dataset deleted, or the run itself, in the admin
  or in code) takes its files with it once the deletion commits: the image and its thumbnail, the run's
  ``runs/<id>/`` artifacts (weights, predictions), the verdict's evidence thumbnails and the DICOM results made
  of it (``dicom_results/<id>/``: SR and key images, which carry the patient's identity) (``remove_files``);
  a deleted series the DICOM header the node kept of it in its spool (``remove_header``).
"""
from __future__ import annotations

from dataclasses import replace

from django.db import transaction
from django.db.models.signals import post_delete, pre_delete

from adrenal_site.jobs.runner import enqueue
from adrenal_site.storage import discard_stored
from annotations.models import Series
from annotations.services import verdicts as store_verdicts
from annotations.signals import boxes_changed

from .models import Image25D, Prediction, TrainingRun
from .services.dicom_node import spool
from .services.dicom_node.answers import results_name
from .services.images import rebuild_after_box_change
from .services.verdicts import SOURCE
from .tasks import build_images_job, start_judge_dataset


def rebuild_images_on_box_change(sender, series: Series, **kwargs) -> None:
    params = rebuild_after_box_change(series)
    if params is not None:
        enqueue(build_images_job, params=params, dataset=series.study.patient.dataset_id)


def remove_files(sender, instance, **kwargs) -> None:
    """A deleted Image25D, TrainingRun or Prediction's files (``adrenal_site.storage.discard_stored``), on commit."""
    if isinstance(instance, Image25D):  # a rebuild to the same names (same boxes) keeps them: its rows hold them
        file, thumbnail = instance.file.name, instance.thumbnail.name
        held = [(Image25D.objects.all(), "file"), (Image25D.objects.all(), "thumbnail")]
        transaction.on_commit(lambda: discard_stored(file, thumbnail, unless_used_by=held))
        return
    # a verdict's evidence thumbnails and the DICOM SR and key images made of it for the PACS (patient data)
    names = [instance.artifacts_dir or f"runs/{instance.pk}"] if isinstance(instance, TrainingRun) \
        else [f"evidence/{instance.pk}", results_name(instance)]
    transaction.on_commit(lambda: discard_stored(*names))


def remove_header(sender, instance: Series, **kwargs) -> None:
    """A deleted series' DICOM header kept in the node's spool (``spool.discard_header``: the patient's name and
    ID, outside ``MEDIA_ROOT``), on commit, unless a series that remains has the same UIDs (a pass
    of the same series, ``<uid>#acq2``, or the same scan in another dataset). ``pre_delete``: its study is still
    there to read the study UID from when its patient or dataset is deleted."""
    study_uid, series_uid = instance.study.study_uid, instance.dicom_series_uid

    def discard() -> None:
        same = Series.objects.filter(study__study_uid=study_uid)
        if not (same.filter(series_uid=series_uid) | same.filter(series_uid__startswith=f"{series_uid}#")).exists():
            spool.discard_header(study_uid, series_uid)

    transaction.on_commit(discard)


def connect_to_store() -> None:
    boxes_changed.connect(rebuild_images_on_box_change, dispatch_uid="inference-rebuild-images")
    for model in (Image25D, TrainingRun, Prediction):
        post_delete.connect(remove_files, sender=model, dispatch_uid=f"inference-remove-files-{model.__name__}")
    pre_delete.connect(remove_header, sender=Series, dispatch_uid="inference-remove-header")
    store_verdicts.register(replace(SOURCE, start_judging=start_judge_dataset))
