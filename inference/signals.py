"""How inference hooks into the study store below it, which must not import it (``connect_to_store``, called
from ``InferenceConfig.ready``):

- a changed crop box (``annotations.signals.boxes_changed``) rebuilds its scan's 2.5D images;
- the worklist and the viewer read verdicts from ``services.verdicts.SOURCE``, and the store's dataset page
  offers "judge every scan of this dataset" through it (``tasks.start_judge_dataset``, as the API does).
"""
from __future__ import annotations

from dataclasses import replace

from adrenal_site.jobs.runner import enqueue
from annotations.models import Series
from annotations.services import verdicts as store_verdicts
from annotations.signals import boxes_changed

from .services.images import rebuild_after_box_change
from .services.verdicts import SOURCE
from .tasks import build_images_job, start_judge_dataset


def rebuild_images_on_box_change(sender, series: Series, **kwargs) -> None:
    params = rebuild_after_box_change(series)
    if params is not None:
        enqueue(build_images_job, params=params, dataset=series.study.patient.dataset_id)


def connect_to_store() -> None:
    boxes_changed.connect(rebuild_images_on_box_change, dispatch_uid="inference-rebuild-images")
    store_verdicts.register(replace(SOURCE, start_judging=start_judge_dataset))
