"""Starting, cancelling and promoting training runs; the data a run trains on.

A run: the dataset's persisted split (created on first use), the preset's full configuration with overrides,
a parent ``train`` job (cpu) that saves ``config.json`` and ``init.pt`` and fans out one ``train_fold`` job per
fold (gpu queue); the last fold to finish queues the aggregation (``inference.tasks.training``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import enqueue, finish, request_cancel

LABEL_VALUE = {"normal": 0, "abnormal": 1}


@dataclass
class ImageRow:
    image_id: int
    series_id: int
    series_uid: str
    patient: str
    label: int
    slice_index: int
    z_mm: float
    path: Path


def scan_labels(dataset) -> dict[int, tuple[str, int]]:
    """``{series_id: (patient pseudo id, 0|1)}`` of labelled scans: the scan's own label, else its patient's."""
    from annotations.models import Label, Series

    patient_label = {l.patient_id: l.value for l in Label.objects.filter(patient__dataset=dataset, series__isnull=True,
                                                                         is_current=True)}
    series_label = {l.series_id: l.value for l in Label.objects.filter(patient__dataset=dataset, series__isnull=False,
                                                                       is_current=True)}
    out = {}
    for s in Series.objects.filter(study__patient__dataset=dataset, is_scan=True).select_related("study__patient"):
        value = series_label.get(s.pk) or patient_label.get(s.study.patient_id)
        if value in LABEL_VALUE:
            out[s.pk] = (s.study.patient.pseudo_id, LABEL_VALUE[value])
    return out


def image_rows(dataset) -> list[ImageRow]:
    """Every stored 2.5D image of the dataset's labelled scans."""
    from inference.models import Image25D

    labels = scan_labels(dataset)
    media = Path(settings.MEDIA_ROOT)
    rows = []
    for im in Image25D.objects.filter(series_id__in=list(labels)).select_related("series").order_by("series_id",
                                                                                                      "slice_index"):
        patient, label = labels[im.series_id]
        rows.append(ImageRow(im.pk, im.series_id, im.series.series_uid, patient, label, im.slice_index, im.z_mm,
                             media / im.file.name))
    return rows


def ensure_split(dataset, *, seed: int = 0, test_fraction: float = 0.2, n_folds: int = 5):
    """The dataset's persisted split; made once from its labelled patients that have 2.5D images."""
    from annotations.models import Dataset
    from inference.ml.splits import make_split
    from inference.models import DatasetSplit

    with transaction.atomic():
        Dataset.objects.select_for_update().get(pk=dataset.pk)
        split = DatasetSplit.objects.filter(dataset=dataset).first()
        if split is not None:
            return split
        patient_label: dict[str, int] = {}
        for r in image_rows(dataset):
            patient_label[r.patient] = max(patient_label.get(r.patient, 0), r.label)
        s = make_split(patient_label, test_fraction=test_fraction, n_folds=n_folds, seed=seed)
        return DatasetSplit.objects.create(dataset=dataset, seed=seed, test_fraction=test_fraction,
                                           test_patients=s.test_patients, folds=s.folds)


def start_run(dataset, preset: str, user=None, overrides: dict | None = None, name: str = ""):
    """Create a TrainingRun and queue its parent job; returns the run."""
    from inference.ml.presets import preset_config
    from inference.models import FoldRun, TrainingRun

    config = preset_config(preset, overrides)
    if not image_rows(dataset):
        raise ValueError(f"dataset {dataset.name!r} has no labelled scans with 2.5D images; build images first")
    split = ensure_split(dataset, seed=int(config["seed"]), test_fraction=float(config["test_fraction"]),
                         n_folds=int(config["n_folds"]))
    config["n_folds"] = len(split.folds)
    from inference.tasks.training import train_run_job

    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, split=split, preset=preset, config=config, name=name,
                                         created_by=user if getattr(user, "is_authenticated", False) else None)
        run.artifacts_dir = f"runs/{run.pk}"
        # a folder left by a deleted run that had the same id is not this run's
        shutil.rmtree(Path(settings.MEDIA_ROOT) / run.artifacts_dir, ignore_errors=True)
        FoldRun.objects.bulk_create([FoldRun(run=run, fold=k) for k in range(len(split.folds))])
        run.job = enqueue(train_run_job, kind="train", params={"run_id": run.pk}, user=user)
        run.save(update_fields=["artifacts_dir", "job"])
    return run


def cancel_run(run) -> None:
    """Stop a run: its jobs are asked to stop, unfinished folds and the run become cancelled."""
    from inference.models import FoldRun, TrainingRun

    if run.status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        return
    if run.job_id:
        request_cancel(run.job)
        job = Job.objects.get(pk=run.job_id)
        if job.status == Job.Status.RUNNING:
            finish(job, Job.Status.CANCELLED, message="cancelled")
    run.folds.exclude(status=FoldRun.Status.SUCCEEDED).update(status=FoldRun.Status.CANCELLED)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.CANCELLED, finished_at=timezone.now())
    run.status = TrainingRun.Status.CANCELLED


def promote(run) -> None:
    """Make a finished run the dataset's model for inference (one promoted run per dataset)."""
    from inference.models import TrainingRun

    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ValueError(f"run {run.pk} is {run.status}; only a finished run can be promoted")
    with transaction.atomic():
        TrainingRun.objects.filter(dataset=run.dataset, promoted=True).exclude(pk=run.pk).update(promoted=False)
        TrainingRun.objects.filter(pk=run.pk).update(promoted=True)
    run.promoted = True


def run_summary(run) -> dict:
    """The ``train --json`` document."""
    return {"run": run.pk, "status": run.status,
            "split": {"test_patients": list(run.split.test_patients), "folds": [list(f) for f in run.split.folds]},
            "folds": [{"fold": f.fold, "best_epoch": f.best_epoch, "val_loss": f.val_loss}
                      for f in run.folds.order_by("fold")]}
