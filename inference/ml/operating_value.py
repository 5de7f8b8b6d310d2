"""Scan-level aggregation of 2.5D image probabilities and the choice of the operating value.

The original rule (Poon et al. 2023): an image is voted abnormal when its probability is >= 0.5, and a
scan is abnormal when the *fraction* of its images voted abnormal reaches the operating value. Other
aggregators (mean probability, mean of the top-k images, max) are offered to compare side by side.

The operating value is chosen on out-of-fold train-val predictions only. That is structural: the
choice takes an :class:`OutOfFold` table, which can only be built from train-val rows that carry the
fold that held them out, and reads only their out-of-fold ``prob`` (never the per-fold columns, which
would include in-fold predictions). Test rows raise; any other table type raises ``TypeError``.

Per-gland models add a ``side`` column (R or L): the ``sides`` aggregator scores each side by the mean of its
top-k image probabilities and the scan by the max of its sides (the multiple-instance rule of
``inference.ml.mil``); the other aggregators pool all of a scan's images as before.

The chooser never returns a value that calls every scan one class while another value separates them; ties on
the objective go to the value best on its complement (Youden's J for accuracy, accuracy for Youden's J,
specificity for a target sensitivity, sensitivity for a target specificity), then to the lowest value.

Reads the ``predictions.csv`` of a training run (one row per 2.5D image: image_id, series_id,
series_uid, patient, label, slice_index, z_mm, split, fold, prob, prob_fold0.., optionally side and side_label: the
gland's own 0/1 where the store knows which side is abnormal).
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
AGGREGATORS = ("fraction", "mean", "topk", "max", "sides")
DEFAULT_TOP_K = 5
SIDE_TOP_K = 2  # the ``sides`` aggregator's k (the MIL trainer's top_k)
OBJECTIVES = ("accuracy", "youden", "sensitivity>=0.95", "specificity>=0.9")


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
    side: str = ""  # "R" / "L" for per-gland images, "" for joined ones
    side_label: int | None = None  # per-gland images: their gland's truth where the store knows it, else None

    @property
    def image_label(self) -> int:
        """The image's own truth: its gland's label for a per-gland image whose side is known, else the scan's."""
        return self.label if self.side_label is None else self.side_label


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


def _side(value: str | None) -> str:
    text = (value or "").strip().upper()
    if text not in ("", "R", "L"):
        raise ValueError(f"side must be R, L or empty, not {value!r}")
    return text


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
                    side=_side(r.get("side")),
                    side_label=None if (r.get("side_label") or "").strip() == "" else _label(r["side_label"]),
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
        """Each image's scan label (what scan aggregation groups by)."""
        return np.array([r.label for r in self.rows], int)

    @property
    def image_labels(self) -> np.ndarray:
        """Each image's own truth (:attr:`ImageRow.image_label`): the image level of a per-gland run counts the
        normal gland of an abnormal scan as normal."""
        return np.array([r.image_label for r in self.rows], int)

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
    if aggregator == "sides":
        return float(np.sort(p)[::-1][: max(1, top_k)].mean())  # one side's score; the scan takes the max
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
    sides: list[dict[str, float]] = field(default_factory=list)  # per-side scores (``sides`` aggregator)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.array(self.label, int), np.array(self.score, float), np.array(self.patient, dtype=object)


def scan_scores(table: ImageTable, aggregator: str = "fraction", top_k: int | None = None) -> ScanScores:
    """Group images by scan and aggregate; a scan's label is its images' label (they must agree).

    ``sides``: each side scored by its top-k mean (``top_k`` default ``SIDE_TOP_K``), the scan by the max;
    the other aggregators pool all images (``top_k`` default ``DEFAULT_TOP_K``)."""
    if top_k is None:
        top_k = SIDE_TOP_K if aggregator == "sides" else DEFAULT_TOP_K
    groups: dict[str, list[ImageRow]] = {}
    for r in table.rows:
        groups.setdefault(r.series_uid, []).append(r)
    out = ScanScores()
    for uid, imgs in groups.items():
        labels = {r.label for r in imgs}
        if len(labels) != 1:
            raise ValueError(f"scan {uid} has images with different labels {sorted(labels)}")
        imgs.sort(key=lambda r: (r.side, r.slice_index))
        probs = [r.prob for r in imgs]
        out.series_uid.append(uid)
        out.series_id.append(imgs[0].series_id)
        out.patient.append(imgs[0].patient)
        out.label.append(imgs[0].label)
        by_side: dict[str, list[float]] = {}
        for r in imgs:
            by_side.setdefault(r.side, []).append(r.prob)
        side_scores = {side: aggregate(p, "sides", top_k if aggregator == "sides" else SIDE_TOP_K)
                       for side, p in sorted(by_side.items())}
        out.sides.append(side_scores)
        out.score.append(max(side_scores.values()) if aggregator == "sides" else aggregate(probs, aggregator, top_k))
        out.probability.append(float(np.mean(probs)))
        out.fraction.append(aggregate(probs, "fraction"))
        out.images.append(imgs)
    return out


# --- the choice ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Objective:
    name: str  # accuracy | youden | sensitivity | specificity
    target: float | None = None

    def __str__(self) -> str:
        return f"{self.name}>={self.target:g}" if self.name in TARGETED else self.name


TARGETED = ("sensitivity", "specificity")


MIN_TARGET = 0.5


def parse_objective(text: str | Objective) -> Objective:
    """``accuracy`` (the original), ``youden``, a target sensitivity (``sensitivity>=0.95``, ``sens:95`` as a
    percent) or a target specificity (``specificity>=0.9``, ``spec:90``). ValueError names an unknown objective or
    a target outside 0.5-1 (50-100%)."""
    if isinstance(text, Objective):
        return text
    t = str(text).strip().lower().replace(" ", "")
    if t in ("accuracy", "youden"):
        return Objective(t)
    m = re.fullmatch(r"(sensitivity|sens|specificity|spec)(?:>=|:|=)?([0-9.]+)(%?)", t)
    if m:
        name = "sensitivity" if m.group(1).startswith("sens") else "specificity"
        try:
            target = float(m.group(2))
        except ValueError:
            raise ValueError(f"target {name} {m.group(2)!r} is not a number") from None
        if m.group(3) or 1 < target <= 100:
            target /= 100.0  # a percent: sens:90, spec>=90%
        if target > 1:
            raise ValueError(f"target {name} {m.group(2)}{m.group(3)} is above 100%: give a fraction (0.9) or a "
                             "percent (90)")
        if target < MIN_TARGET:
            raise ValueError(f"target {name} {m.group(2)}{m.group(3)} is outside {MIN_TARGET:g}-1 (or "
                             f"{MIN_TARGET:.0%}-100%): a lower target would call most "
                             f"{'abnormal' if name == 'sensitivity' else 'normal'} scans wrongly")
        return Objective(name, target)
    raise ValueError(f"unknown objective {text!r}; use accuracy, youden, sensitivity>=0.95 or specificity>=0.9")


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


def _degenerate(scores: np.ndarray, t: float) -> bool:
    """True when value ``t`` calls every scan the same class."""
    pred = scores >= t
    return bool(pred.all() or not pred.any())


def choose_operating_value(
    oof: OutOfFold, objective: str | Objective = "accuracy", aggregator: str = "fraction", top_k: int | None = None
) -> Choice:
    """The scan-level operating value maximising the objective on out-of-fold train-val scans.

    Values that call every scan one class are dropped whenever another value separates the scans. Among the
    rest, the best objective wins; ties go to the best complement (Youden's J for accuracy, accuracy for
    Youden's J), then to the lowest value (the more sensitive one). A target sensitivity takes the highest
    value still reaching it (the most specific one); when only a one-class value reaches it, the separating
    value with the highest sensitivity (then specificity) is taken instead. A target specificity takes the lowest
    value still reaching it (the most sensitive one), likewise falling back to the most specific separating value.
    Measured on 7 development and 3 fresh cohort pairs (README, "Model quality"), a 0.90 specificity target chosen
    out-of-fold held on every test cohort, where Youden's value fell to 0.65-0.70; it costs sensitivity.
    """
    if not isinstance(oof, OutOfFold):
        raise TypeError("choose_operating_value takes OutOfFold predictions only (built from train-val rows)")
    obj = parse_objective(objective)
    scans = scan_scores(oof, aggregator, top_k)
    y, s, _ = scans.arrays()
    if np.unique(y).size < 2:
        raise ValueError("out-of-fold scans need both normal and abnormal labels to choose an operating value")
    candidates = [float(t) for t in candidate_values(s)]
    separating = [t for t in candidates if not _degenerate(s, t)]
    if separating:
        candidates = separating
    table = []
    for t in candidates:
        m = metrics_from_confusion(*confusion(y, s, t))
        youden = m["sensitivity"] + m["specificity"] - 1
        table.append((t, m, youden))
    if obj.name == "specificity":  # the lowest (most sensitive) value still reaching the target specificity
        reaching = [row for row in table if row[1]["specificity"] + 1e-12 >= obj.target]
        if reaching:
            best = min(reaching, key=lambda row: row[0])
        else:
            best = max(table, key=lambda row: (row[1]["specificity"], row[1]["sensitivity"], -row[0]))
    elif obj.name == "sensitivity":
        reaching = [row for row in table if row[1]["sensitivity"] + 1e-12 >= obj.target]
        if reaching:
            best = max(reaching, key=lambda row: row[0])
        else:
            best = max(table, key=lambda row: (row[1]["sensitivity"], row[1]["specificity"], row[0]))
    else:
        def key(row):
            t, m, youden = row
            main, comp = (m["accuracy"], youden) if obj.name == "accuracy" else (youden, m["accuracy"])
            return (round(main, 12), round(comp, 12), -t)

        best = max(table, key=key)
    value, metrics, _ = best
    tn, fp, fn, tp = confusion(y, s, value)
    return Choice(value, str(obj), aggregator, {**metrics, "confusion": [[tn, fp], [fn, tp]]}, len(scans.score))
