"""Scan-level aggregation of 2.5D image probabilities and the choice of the operating value.

The original rule (Poon et al. 2023): an image is voted abnormal when its probability is >= 0.5, and a
scan is abnormal when the *fraction* of its images voted abnormal reaches the operating value. Other
aggregators (mean probability, mean of the top-k images, max) are offered to compare side by side.

The operating value is chosen on out-of-fold train-val predictions only. That is structural: the
choice takes an :class:`OutOfFold` table, which can only be built from train-val rows that carry the
fold that held them out, and reads only their out-of-fold ``prob`` (never the per-fold columns, which
would include in-fold predictions). Test rows raise; any other table type raises ``TypeError``.

Reads the ``predictions.csv`` of a training run (one row per 2.5D image: image_id, series_id,
series_uid, patient, label, slice_index, z_mm, split, fold, prob, prob_fold0..).
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .metrics import confusion, metrics_from_confusion

IMAGE_VOTE = 0.5
AGGREGATORS = ("fraction", "mean", "topk", "max")
DEFAULT_TOP_K = 5
OBJECTIVES = ("accuracy", "youden", "sensitivity>=0.95")


@dataclass(frozen=True)
class ImageRow:
    image_id: str
    series_id: str
    series_uid: str
    patient: str
    label: int
    slice_index: int
    z_mm: float
    split: str
    fold: int | None
    prob: float
    prob_folds: tuple[float, ...] = ()


def _float(value: str | None) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    return float(value)


def _label(value: str) -> int:
    text = str(value).strip().lower()
    if text in ("abnormal", "normal"):
        return int(text == "abnormal")
    label = int(float(text))
    if label not in (0, 1):
        raise ValueError(f"label must be 0/1 or normal/abnormal, not {value!r}")
    return label


def read_predictions_csv(path: str | os.PathLike) -> list[ImageRow]:
    """All rows of a run's predictions.csv; a clear error naming the file and line on a bad row."""
    rows: list[ImageRow] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        required = {"series_uid", "patient", "label", "split", "prob"}
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        fold_cols = sorted((c for c in reader.fieldnames or [] if re.fullmatch(r"prob_fold\d+", c)),
                           key=lambda c: int(c[9:]))
        for line, r in enumerate(reader, start=2):
            try:
                split = r["split"].strip()
                if split not in ("trainval", "test"):
                    raise ValueError(f"split must be trainval or test, not {split!r}")
                fold = _float(r.get("fold"))
                prob = float(r["prob"])
                if not 0.0 <= prob <= 1.0 or math.isnan(prob):
                    raise ValueError(f"prob {prob} outside [0, 1]")
                rows.append(ImageRow(
                    image_id=r.get("image_id", ""), series_id=r.get("series_id", ""), series_uid=r["series_uid"],
                    patient=r["patient"], label=_label(r["label"]), slice_index=int(float(r.get("slice_index") or 0)),
                    z_mm=float(r.get("z_mm") or 0.0), split=split, fold=None if fold is None else int(fold), prob=prob,
                    prob_folds=tuple(float(r[c]) for c in fold_cols if (r.get(c) or "").strip() != ""),
                ))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from exc
    return rows


@dataclass(frozen=True)
class ImageTable:
    """Image predictions of one split; use :meth:`split_rows` to build the right kind."""

    rows: tuple[ImageRow, ...]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.rows], int)

    @property
    def probs(self) -> np.ndarray:
        return np.array([r.prob for r in self.rows], float)

    @property
    def patients(self) -> np.ndarray:
        return np.array([r.patient for r in self.rows], dtype=object)

    def __len__(self) -> int:
        return len(self.rows)


class OutOfFold(ImageTable):
    """Train-val images, each with the out-of-fold probability from the fold model that never trained on it."""

    def __init__(self, rows: Iterable[ImageRow]):
        rows = tuple(rows)
        for r in rows:
            if r.split != "trainval":
                raise ValueError(f"image {r.image_id or r.series_uid} is a {r.split} row: "
                                 "the operating value is chosen on out-of-fold train-val predictions only")
            if r.fold is None:
                raise ValueError(f"train-val image {r.image_id or r.series_uid} has no held-out fold")
        # keep only the out-of-fold probability: per-fold columns would leak in-fold predictions
        object.__setattr__(self, "rows", tuple(ImageRow(**{**r.__dict__, "prob_folds": ()}) for r in rows))


class TestImages(ImageTable):
    """Test images, with the mean of the fold models' probabilities."""

    def __init__(self, rows: Iterable[ImageRow]):
        rows = tuple(rows)
        for r in rows:
            if r.split != "test":
                raise ValueError(f"image {r.image_id or r.series_uid} is not a test row")
        object.__setattr__(self, "rows", rows)


def split_rows(rows: Iterable[ImageRow]) -> tuple[OutOfFold, TestImages]:
    rows = list(rows)
    return OutOfFold(r for r in rows if r.split == "trainval"), TestImages(r for r in rows if r.split == "test")


# --- scan-level aggregation ---------------------------------------------------------------------------

def aggregate(probs: Iterable[float], aggregator: str = "fraction", top_k: int = DEFAULT_TOP_K) -> float:
    """One scan's score from its image probabilities."""
    p = np.asarray(list(probs), float)
    if p.size == 0:
        raise ValueError("a scan without images has no score")
    if aggregator == "fraction":
        return float(np.mean(p >= IMAGE_VOTE))
    if aggregator == "mean":
        return float(p.mean())
    if aggregator == "topk":
        return float(np.sort(p)[::-1][: max(1, top_k)].mean())
    if aggregator == "max":
        return float(p.max())
    raise ValueError(f"unknown aggregator {aggregator!r}; choose one of {', '.join(AGGREGATORS)}")


@dataclass
class ScanScores:
    """One entry per scan (series), in first-seen order."""

    series_uid: list[str] = field(default_factory=list)
    series_id: list[str] = field(default_factory=list)
    patient: list[str] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)  # mean image probability
    fraction: list[float] = field(default_factory=list)
    images: list[list[ImageRow]] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.array(self.label, int), np.array(self.score, float), np.array(self.patient, dtype=object)


def scan_scores(table: ImageTable, aggregator: str = "fraction", top_k: int = DEFAULT_TOP_K) -> ScanScores:
    """Group images by scan and aggregate; a scan's label is its images' label (they must agree)."""
    groups: dict[str, list[ImageRow]] = {}
    for r in table.rows:
        groups.setdefault(r.series_uid, []).append(r)
    out = ScanScores()
    for uid, imgs in groups.items():
        labels = {r.label for r in imgs}
        if len(labels) != 1:
            raise ValueError(f"scan {uid} has images with different labels {sorted(labels)}")
        imgs.sort(key=lambda r: r.slice_index)
        probs = [r.prob for r in imgs]
        out.series_uid.append(uid)
        out.series_id.append(imgs[0].series_id)
        out.patient.append(imgs[0].patient)
        out.label.append(imgs[0].label)
        out.score.append(aggregate(probs, aggregator, top_k))
        out.probability.append(float(np.mean(probs)))
        out.fraction.append(aggregate(probs, "fraction"))
        out.images.append(imgs)
    return out


# --- the choice ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Objective:
    name: str  # accuracy | youden | sensitivity
    target: float | None = None

    def __str__(self) -> str:
        return f"sensitivity>={self.target:g}" if self.name == "sensitivity" else self.name


def parse_objective(text: str | Objective) -> Objective:
    """``accuracy`` (the original), ``youden``, or a target sensitivity: ``sensitivity>=0.95``."""
    if isinstance(text, Objective):
        return text
    t = str(text).strip().lower().replace(" ", "")
    if t in ("accuracy", "youden"):
        return Objective(t)
    m = re.fullmatch(r"(?:sensitivity|sens)(?:>=|:|=)?([0-9.]+)", t)
    if m:
        target = float(m.group(1))
        if target > 1:
            target /= 100.0
        if not 0 < target <= 1:
            raise ValueError(f"target sensitivity must be in (0, 1], not {m.group(1)}")
        return Objective("sensitivity", target)
    raise ValueError(f"unknown objective {text!r}; use accuracy, youden or sensitivity>=0.95")


def candidate_values(scores: np.ndarray) -> np.ndarray:
    """Thresholds that separate the scores differently: the lowest score, the midpoints between
    consecutive distinct scores, and just above the highest."""
    u = np.unique(np.asarray(scores, float))
    if u.size == 0:
        raise ValueError("no scores to choose an operating value from")
    return np.concatenate([[u[0]], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])


@dataclass(frozen=True)
class Choice:
    operating_value: float
    objective: str
    aggregator: str
    oof_metrics: Mapping
    n_scans: int


def choose_operating_value(
    oof: OutOfFold, objective: str | Objective = "accuracy", aggregator: str = "fraction", top_k: int = DEFAULT_TOP_K
) -> Choice:
    """The scan-level operating value maximising the objective on out-of-fold train-val scans.

    Ties go to the lowest value (the more sensitive one) for accuracy and Youden's J; a target
    sensitivity takes the highest value still reaching it (the most specific one).
    """
    if not isinstance(oof, OutOfFold):
        raise TypeError("choose_operating_value takes OutOfFold predictions only (built from train-val rows)")
    obj = parse_objective(objective)
    scans = scan_scores(oof, aggregator, top_k)
    y, s, _ = scans.arrays()
    if np.unique(y).size < 2:
        raise ValueError("out-of-fold scans need both normal and abnormal labels to choose an operating value")
    best_value, best_key, best_metrics = None, None, None
    for t in candidate_values(s):
        m = metrics_from_confusion(*confusion(y, s, float(t)))
        if obj.name == "accuracy":
            key = m["accuracy"]
        elif obj.name == "youden":
            key = m["sensitivity"] + m["specificity"] - 1
        else:
            if m["sensitivity"] + 1e-12 < obj.target:
                continue
            key = float(t)  # highest value still sensitive enough
        if best_key is None or key > best_key + 1e-12:
            best_value, best_key, best_metrics = float(t), key, m
    tn, fp, fn, tp = confusion(y, s, best_value)
    return Choice(best_value, str(obj), aggregator, {**best_metrics, "confusion": [[tn, fp], [fn, tp]]},
                  len(scans.score))
