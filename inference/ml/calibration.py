"""Probability calibration fitted on out-of-fold predictions, and the reliability diagram.

- ``temperature`` (Guo et al. 2017, with a bias: Platt scaling on the logit): ``p' = sigmoid(a * logit(p) + b)``
  fitted by maximum likelihood (Newton steps on the 2-parameter log-loss, ``a > 0`` so the order is kept and
  AUC unchanged);
- ``isotonic`` (Zadrozny & Elkan 2002): a monotone step function (scikit-learn's IsotonicRegression); may
  merge close scores into ties.

Fit on the run's out-of-fold train-val scan scores only (never test rows); store ``Calibrator.to_dict()`` in
the run's config/evaluation and apply with ``Calibrator.from_dict(d)(scores)``. ``reliability`` gives the
diagram's bins; ``expected_calibration_error`` its summary.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Calibrator:
    """``method`` 'identity' | 'temperature' | 'isotonic'; ``params``: a, b (temperature) or x, y (isotonic knots)."""

    method: str = "identity"
    params: dict = field(default_factory=dict)
    n: int = 0

    def __call__(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        s = np.asarray(scores, float)
        if self.method == "identity":
            return s.copy()
        if self.method == "temperature":
            return _sigmoid(self.params["a"] * _logit(s) + self.params["b"])
        if self.method == "isotonic":
            return np.interp(s, self.params["x"], self.params["y"])
        raise ValueError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibrator:
        d = d or {}
        return cls(d.get("method", "identity"), dict(d.get("params") or {}), int(d.get("n", 0)))


def fit_temperature(scores: Sequence[float], labels: Sequence[int], iters: int = 50) -> Calibrator:
    """Platt scaling on the logit of ``scores`` (probabilities in [0, 1]) against ``labels`` (0/1)."""
    z, y = _logit(scores), np.asarray(labels, float)
    if z.size == 0 or np.unique(y).size < 2:
        raise ValueError("calibration needs scores of both classes")
    a, b = 1.0, 0.0
    lam = 1e-3  # a little ridge keeps separable data finite
    for _ in range(iters):
        p = _sigmoid(a * z + b)
        g = np.array([np.sum((p - y) * z) + lam * (a - 1), np.sum(p - y) + lam * b])
        w = p * (1 - p)
        h = np.array([[np.sum(w * z * z) + lam, np.sum(w * z)], [np.sum(w * z), np.sum(w) + lam]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        a = max(a, 1e-3)
        if np.abs(step).max() < 1e-8:
            break
    return Calibrator("temperature", {"a": float(a), "b": float(b)}, int(z.size))


def fit_isotonic(scores: Sequence[float], labels: Sequence[int]) -> Calibrator:
    """A monotone (non-decreasing) map fitted by isotonic regression, stored as its knots."""
    from sklearn.isotonic import IsotonicRegression

    s, y = np.asarray(scores, float), np.asarray(labels, float)
    if s.size == 0 or np.unique(y).size < 2:
        raise ValueError("calibration needs scores of both classes")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
    return Calibrator("isotonic", {"x": [float(v) for v in iso.X_thresholds_],
                                   "y": [float(v) for v in iso.y_thresholds_]}, int(s.size))


def fit(scores: Sequence[float], labels: Sequence[int], method: str = "temperature") -> Calibrator:
    """``fit_temperature`` or ``fit_isotonic`` by name ('identity' returns the identity)."""
    if method == "identity":
        return Calibrator("identity", {}, len(scores))
    if method == "temperature":
        return fit_temperature(scores, labels)
    if method == "isotonic":
        return fit_isotonic(scores, labels)
    raise ValueError(f"unknown calibration method {method!r}; use temperature, isotonic or identity")


def bin_index(probs: Sequence[float] | np.ndarray, bins: int = 10) -> np.ndarray:
    """The reliability bin of each probability: ``bins`` uniform bins over [0, 1], each closed on the right (the
    first [0, 1/bins], then (lo, hi]), as scikit-learn's ``calibration_curve(strategy="uniform")`` bins them, so the
    ECE and the bins stored here are those of the diagram the dashboard draws. The one place this rule lives."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(probs, float), side="left")


def reliability(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> list[dict]:
    """Reliability-diagram bins over [0, 1] (:func:`bin_index`): ``{"lo", "hi", "n", "mean_prob", "frac_pos"}``
    (empty bins kept with n 0 and None means)."""
    p, y = np.asarray(probs, float), np.asarray(labels, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = bin_index(p, bins)  # already within 0 .. bins - 1
    out = []
    for i in range(bins):
        m = idx == i
        out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(m.sum()),
                    "mean_prob": float(p[m].mean()) if m.any() else None,
                    "frac_pos": float(y[m].mean()) if m.any() else None})
    return out


def expected_calibration_error(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """Bin-weighted mean |observed frequency - mean probability| (Naeini et al. 2015)."""
    n = len(probs)
    return float(sum(b["n"] / n * abs(b["frac_pos"] - b["mean_prob"]) for b in reliability(probs, labels, bins)
                     if b["n"])) if n else 0.0
