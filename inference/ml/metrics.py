"""Binary classification metrics, ROC and threshold curves, and 95% bootstrap intervals resampled by patient.

Conventions: labels are 0 (normal) / 1 (abnormal); a case is called abnormal when its score is
``>= threshold``. A metric whose denominator is empty (e.g. sensitivity with no positives) is ``None``,
never a made-up number, so every result is JSON-ready.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score, roc_curve

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv")
CI_METRICS = ("auc", *METRICS)


def _arrays(y_true: Sequence, y_score: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=int).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def confusion(y_true: Sequence, y_score: Sequence, threshold: float) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` calling ``score >= threshold`` abnormal."""
    y, s = _arrays(y_true, y_score)
    pred = s >= threshold
    return (int(np.sum(~pred & (y == 0))), int(np.sum(pred & (y == 0))),
            int(np.sum(~pred & (y == 1))), int(np.sum(pred & (y == 1))))


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def metrics_from_confusion(tn: float, fp: float, fn: float, tp: float) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, sensitivity, specificity, PPV and NPV from counts (None when undefined)."""
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
        "balanced_accuracy": (sens + spec) / 2 if sens is not None and spec is not None else None,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


DEFAULT_PREVALENCE = 0.01  # adrenal incidentalomas: about 1% of abdominal CTs
PREVALENCE_NOTE = "adrenal incidentalomas are found on about 1% of abdominal CTs"


def predictive_values(sensitivity: float | None, specificity: float | None, prevalence: float
                      ) -> dict[str, float | None]:
    """PPV and NPV re-stated at ``prevalence`` (0 < prevalence < 1) from sensitivity and specificity (Bayes):
    ``PPV = sens p / (sens p + (1 - spec)(1 - p))``, ``NPV = spec (1 - p) / (spec (1 - p) + (1 - sens) p)``.
    The one place this formula lives (the dashboard asks the API). None where sensitivity or specificity is
    undefined or a denominator is 0; ValueError for a prevalence outside (0, 1)."""
    try:
        p = float(prevalence)
    except (TypeError, ValueError):
        raise ValueError(f"prevalence must be a number between 0 and 1, not {prevalence!r}") from None
    if not 0.0 < p < 1.0:
        raise ValueError(f"prevalence must be between 0 and 1 (exclusive), not {p:g}")
    if sensitivity is None or specificity is None:
        return {"prevalence": p, "ppv": None, "npv": None}
    se, sp = float(sensitivity), float(specificity)
    return {"prevalence": p, "ppv": _ratio(se * p, se * p + (1 - sp) * (1 - p)),
            "npv": _ratio(sp * (1 - p), sp * (1 - p) + (1 - se) * p)}


LESION_SIZE_EDGES_MM = (10.0, 20.0, 40.0)  # < 10 mm is below the incidentaloma definition (ESE/ENSAT 2016: ≥ 1 cm)


def sensitivity_by_size(lesions: Iterable[tuple[float, bool]], edges: Sequence[float] = LESION_SIZE_EDGES_MM,
                        confidence: float = 0.95) -> list[dict]:
    """Sensitivity per lesion-size stratum. ``lesions`` are ``(diameter_mm, detected)`` pairs; strata are split
    at ``edges`` (mm, increasing; a lesion of exactly an edge goes to the stratum above). Returns one dict per
    stratum, empty ones included: ``{"label": "10–20 mm", "lo_mm", "hi_mm" (None above the last edge),
    "detected", "total", "sensitivity" (None when empty), "ci": [lo, hi] | None}``, the interval by the Wilson
    score method (``scipy.stats.binomtest(...).proportion_ci``; Wilson 1927), which stays inside [0, 1] and
    behaves at the small counts a test split has. Raises ValueError for a diameter that is not a positive
    finite number."""
    bounds = [0.0, *map(float, edges), None]
    counts = [[0, 0] for _ in range(len(bounds) - 1)]
    for diameter, detected in lesions:
        d = float(diameter)
        if not np.isfinite(d) or d <= 0:
            raise ValueError(f"a lesion diameter must be a positive number of mm, not {diameter!r}")
        k = int(np.searchsorted(np.asarray(edges, float), d, side="right"))
        counts[k][0] += bool(detected)
        counts[k][1] += 1
    out = []
    for k, (detected, total) in enumerate(counts):
        lo, hi = bounds[k], bounds[k + 1]
        label = f"< {hi:g} mm" if k == 0 else f"\u2265 {lo:g} mm" if hi is None else f"{lo:g}\u2013{hi:g} mm"
        ci = None
        if total:
            interval = binomtest(detected, total).proportion_ci(confidence_level=confidence, method="wilson")
            ci = [round(float(interval.low), 4), round(float(interval.high), 4)]
        out.append({"label": label, "lo_mm": lo, "hi_mm": hi, "detected": detected, "total": total,
                    "sensitivity": detected / total if total else None, "ci": ci})
    return out


def auc(y_true: Sequence, y_score: Sequence, sample_weight: Sequence | None = None) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    y, s = _arrays(y_true, y_score)
    w = None if sample_weight is None else np.asarray(sample_weight, float)
    present = y if w is None else y[w > 0]
    if np.unique(present).size < 2:
        return None
    return float(roc_auc_score(y, s, sample_weight=w))


def roc(y_true: Sequence, y_score: Sequence) -> dict[str, list[float]]:
    """ROC points ``{"fpr", "tpr", "thresholds"}`` (empty lists when only one class is present)."""
    y, s = _arrays(y_true, y_score)
    if np.unique(y).size < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    # each threshold is a score itself (the first just above the highest), not rounded: calling ``score >= t``
    # abnormal at a stored threshold gives its point (a threshold rounded up past a score, or the first one rounded
    # down onto the highest score, gave another point)
    thr = np.where(np.isfinite(thr), thr, np.nextafter(s.max(), np.inf))
    return {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist(), "thresholds": [float(t) for t in thr]}


def binary_metrics(y_true: Sequence, y_score: Sequence, threshold: float) -> dict:
    """Confusion ``[[tn, fp], [fn, tp]]``, AUC and the six threshold metrics."""
    tn, fp, fn, tp = confusion(y_true, y_score, threshold)
    return {"auc": auc(y_true, y_score), **metrics_from_confusion(tn, fp, fn, tp),
            "confusion": [[tn, fp], [fn, tp]], "n": tn + fp + fn + tp}


def threshold_curve(y_true: Sequence, y_score: Sequence, thresholds: Sequence[float] | None = None) -> list[dict]:
    """Each metric and the confusion counts at each threshold (default 0.00, 0.01, ..., 1.00)."""
    y, s = _arrays(y_true, y_score)
    if thresholds is None:
        thresholds = np.round(np.linspace(0, 1, 101), 2)
    out = []
    for t in thresholds:
        tn, fp, fn, tp = confusion(y, s, float(t))
        out.append({"threshold": float(t), "tn": tn, "fp": fp, "fn": fn, "tp": tp,
                    **metrics_from_confusion(tn, fp, fn, tp)})
    return out


@dataclass(frozen=True)
class Bootstrap:
    """Settings of a patient-level bootstrap: ``n`` replicates (1 to ``MAX_BOOTSTRAP``), ``seed`` (>= 0) and the
    interval's ``level`` (0-1). ValueError names a setting outside those (``evaluate --bootstrap -5``)."""

    n: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= MAX_BOOTSTRAP:
            raise ValueError(f"bootstrap replicates must be a whole number from 1 to {MAX_BOOTSTRAP}, not {self.n!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"bootstrap seed must be a whole number from 0 to {2**32 - 1}, not {self.seed!r}")
        if not 0 < float(self.level) < 1:
            raise ValueError(f"interval level must be between 0 and 1, not {self.level!r}")


MAX_BOOTSTRAP = 100_000  # replicates: far past where intervals settle; more only costs time and memory


def _percentile_ci(values: np.ndarray, level: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(lo), float(hi)]


def bootstrap_ci(
    y_true: Sequence, y_score: Sequence, groups: Sequence, threshold: float, boot: Bootstrap = Bootstrap()
) -> dict[str, list[float] | None]:
    """Percentile intervals ``{"<metric>_ci": [lo, hi]}`` for AUC and the six metrics.

    Each replicate draws as many patients as there are, with replacement (seeded), and takes every case
    of each drawn patient as often as it was drawn, so a patient's correlated scans and images move
    together. Replicates where a metric is undefined are left out of that metric's interval.
    """
    y, s = _arrays(y_true, y_score)
    g = np.asarray(groups).ravel()
    if g.size != y.size:
        raise ValueError("groups must give one patient per case")
    if y.size == 0:
        return {f"{m}_ci": None for m in CI_METRICS}
    patients, inverse = np.unique(g, return_inverse=True)
    n_pat = patients.size
    pred = s >= threshold
    # per-patient confusion counts [n_pat, 4]: tn, fp, fn, tp
    cells = np.stack([~pred & (y == 0), pred & (y == 0), ~pred & (y == 1), pred & (y == 1)], axis=1).astype(float)
    per_patient = np.zeros((n_pat, 4))
    np.add.at(per_patient, inverse, cells)
    rng = np.random.default_rng(boot.seed)
    draws = rng.integers(0, n_pat, size=(boot.n, n_pat))
    weights = np.zeros((boot.n, n_pat))
    np.add.at(weights, (np.repeat(np.arange(boot.n), n_pat), draws.ravel()), 1.0)
    counts = weights @ per_patient  # [n, 4]
    tn, fp, fn, tp = counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        values = {
            "auc": _weighted_auc(y, s, inverse, n_pat, weights),
            "accuracy": (tp + tn) / counts.sum(axis=1),
            "balanced_accuracy": (sens + spec) / 2,
            "sensitivity": sens,
            "specificity": spec,
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
        }
    return {f"{m}_ci": _percentile_ci(values[m], boot.level) for m in CI_METRICS}


def _weighted_auc(y: np.ndarray, s: np.ndarray, inverse: np.ndarray, n_pat: int, weights: np.ndarray) -> np.ndarray:
    """AUC of every replicate at once (Mann-Whitney with ties counted half), NaN where a class is absent."""
    uniq, u_idx = np.unique(s, return_inverse=True)
    pos = np.zeros((n_pat, uniq.size))
    neg = np.zeros((n_pat, uniq.size))
    np.add.at(pos, (inverse[y == 1], u_idx[y == 1]), 1.0)
    np.add.at(neg, (inverse[y == 0], u_idx[y == 0]), 1.0)
    w_pos, w_neg = weights @ pos, weights @ neg  # [n, n_unique], ascending score
    below = np.cumsum(w_neg, axis=1) - w_neg
    n_p, n_n = w_pos.sum(axis=1), w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * (below + 0.5 * w_neg)).sum(axis=1) / (n_p * n_n)


def evaluate_level(
    y_true: Sequence, y_score: Sequence, groups: Sequence, threshold: float, boot: Bootstrap = Bootstrap(),
    *, curve: bool = True,
) -> dict:
    """Everything a dashboard shows for one level (image, scan or patient): metrics with ``<name>_ci``,
    confusion matrix, ROC and (optionally) the threshold curve."""
    out = {"threshold": float(threshold), **binary_metrics(y_true, y_score, threshold)}
    out.update(bootstrap_ci(y_true, y_score, groups, threshold, boot))
    y = np.asarray(y_true, int)
    out["positives"], out["negatives"] = int(np.sum(y == 1)), int(np.sum(y == 0))
    out["patients"] = int(np.unique(np.asarray(groups)).size)
    out["roc"] = roc(y_true, y_score)
    if curve:
        out["threshold_curve"] = threshold_curve(y_true, y_score)
    return out
