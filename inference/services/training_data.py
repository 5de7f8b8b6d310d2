"""The data a run trains on: labelled scans, their stored 2.5D images, the persisted split, a fold's arrays."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db import transaction

from adrenal_site.locking import lock
from adrenal_site.storage import local_path
from annotations.models import Dataset, Label, Series
from inference.ml.splits import Split, extend_split, make_split
from inference.ml.training import FoldData

from ..models import DatasetSplit, Image25D, TrainingRun

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


def scan_labels(dataset: Dataset) -> dict[int, tuple[str, int]]:
    """``{series_id: (patient pseudo id, 0|1)}`` of labelled scans: the scan's own label, else its patient's."""
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


def image_rows(dataset: Dataset) -> list[ImageRow]:
    """Every stored 2.5D image of the dataset's labelled scans."""
    labels = scan_labels(dataset)
    rows = []
    for im in Image25D.objects.filter(series_id__in=list(labels)).select_related("series").order_by("series_id",
                                                                                                      "slice_index"):
        patient, label = labels[im.series_id]
        rows.append(ImageRow(im.pk, im.series_id, im.series.series_uid, patient, label, im.slice_index, im.z_mm,
                             local_path(im.file.name)))
    return rows


def ensure_split(dataset: Dataset, *, seed: int = 0, test_fraction: float = 0.2, n_folds: int = 5,
                 labels: dict[str, int] | None = None) -> DatasetSplit:
    """The dataset's split for a new run: its latest version when that holds every usable labelled patient, else the
    next version (the latest extended by the patients it lacks, ``inference.ml.splits.extend_split``: nobody moves);
    the first is made with ``seed``, ``test_fraction`` and ``n_folds``, later versions keep the first's.

    ``labels``: ``{patient: 0|1}``, the patients a run can use (default: those with stored 2.5D images)."""
    with transaction.atomic():
        lock(Dataset, dataset.pk)
        latest = latest_split(dataset)
        patient_label: dict[str, int] = dict(labels or {})
        for r in ([] if labels is not None else image_rows(dataset)):
            patient_label[r.patient] = max(patient_label.get(r.patient, 0), r.label)
        if latest is None:
            s = make_split(patient_label, test_fraction=test_fraction, n_folds=n_folds, seed=seed)
            return DatasetSplit.objects.create(dataset=dataset, seed=seed, test_fraction=test_fraction,
                                               test_patients=s.test_patients, folds=s.folds)
        old = Split(list(latest.test_patients), [list(f) for f in latest.folds])
        placed = set(old.test_patients) | set(old.trainval())
        if not set(patient_label) - placed:
            return latest
        s = extend_split(old, patient_label, test_fraction=latest.test_fraction, seed=latest.seed)
        return DatasetSplit.objects.create(dataset=dataset, version=latest.version + 1, seed=latest.seed,
                                           test_fraction=latest.test_fraction, test_patients=s.test_patients,
                                           folds=s.folds)


def latest_split(dataset: Dataset) -> DatasetSplit | None:
    """The dataset's newest split version, or None before its first run."""
    return DatasetSplit.objects.filter(dataset=dataset).order_by("-version").first()


def fold_data(run: TrainingRun, fold: int) -> FoldData:
    """Training and validation images of a fold (patients from the run's split)."""
    val = set(run.split.folds[fold])
    train = {p for k, f in enumerate(run.split.folds) if k != fold for p in f}
    rows = image_rows(run.dataset)
    tr = [r for r in rows if r.patient in train]
    va = [r for r in rows if r.patient in val]

    def load(rs: list[ImageRow]) -> np.ndarray:
        return np.stack([np.load(r.path) for r in rs]) if rs else np.zeros((0, 3, 1, 2), np.float16)

    return FoldData(load(tr), np.array([r.label for r in tr]), load(va), np.array([r.label for r in va]))
