"""Calibration fitted on out-of-fold scores: temperature keeps the order (AUC) and fixes over-confidence,
isotonic is monotone, the reliability bins add up, and the fitted map round-trips through JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from inference.ml import calibration as C
from inference.ml.metrics import auc


def _overconfident(seed: int, n: int = 400):
    """True probability q; the model reports q pushed towards 0/1 (logit x 3)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < q).astype(int)
    z = np.log(q / (1 - q)) * 3
    return 1 / (1 + np.exp(-z)), y


def _log_loss(p, y):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_temperature_undoes_overconfidence_and_keeps_the_order():
    p, y = _overconfident(0)
    cal = C.fit(p, y, "temperature")
    assert cal.params["a"] == pytest.approx(1 / 3, abs=0.08)
    p2, y2 = _overconfident(1)  # fresh data: calibrated better
    assert _log_loss(cal(p2), y2) < _log_loss(p2, y2)
    assert C.expected_calibration_error(cal(p2), y2) < C.expected_calibration_error(p2, y2)
    assert auc(y2, cal(p2)) == pytest.approx(auc(y2, p2))
    again = C.Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert np.allclose(again(p2), cal(p2))


def test_isotonic_is_monotone_and_identity_is_identity():
    p, y = _overconfident(2)
    cal = C.fit(p, y, "isotonic")
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(cal(grid)) >= -1e-12) and cal(grid).min() >= 0 and cal(grid).max() <= 1
    assert np.allclose(C.fit(p, y, "identity")(p), p)
    with pytest.raises(ValueError, match="both classes"):
        C.fit([0.2, 0.3], [1, 1])
    with pytest.raises(ValueError, match="unknown calibration"):
        C.fit(p, y, "beta")


def test_reliability_bins():
    bins = C.reliability([0.05, 0.15, 0.12, 0.95], [0, 0, 1, 1], bins=10)
    assert len(bins) == 10 and sum(b["n"] for b in bins) == 4
    assert bins[1]["n"] == 2 and bins[1]["frac_pos"] == 0.5 and bins[1]["mean_prob"] == pytest.approx(0.135)
    assert bins[5]["n"] == 0 and bins[5]["mean_prob"] is None
    assert C.expected_calibration_error([0.0, 1.0], [0, 1]) == 0.0


def test_reliability_bins_are_the_diagrams():
    """Scores on a bin edge (image-vote fractions: 0.2, 0.4, 0.5, 0.8) fall in the bin scikit-learn's
    ``calibration_curve`` puts them in, the one the dashboard draws, so the ECE beside the diagram is the diagram's:
    bins (lo, hi], recomputed here from ``calibration_curve``. (The bins were [lo, hi): 0.4 and 0.35 shared the
    diagram's dot but not the ECE's bin, which read 0.475 for a diagram whose ECE is 0.125.)"""
    from sklearn.calibration import calibration_curve

    p = np.array([0.35, 0.4, 0.5, 0.45, 0.2, 0.15, 0.8, 0.0, 1.0, 0.1])
    y = np.array([0, 1, 1, 0, 0, 1, 1, 0, 1, 0])
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p), minlength=10)
    bins = [b for b in C.reliability(p, y) if b["n"]]
    assert [b["n"] for b in bins] == [c for c in counts if c]
    assert np.allclose([b["frac_pos"] for b in bins], prob_true) and np.allclose([b["mean_prob"] for b in bins], prob_pred)
    ece = float(np.sum(counts[counts > 0] / len(p) * np.abs(prob_true - prob_pred)))
    assert C.expected_calibration_error(p, y) == pytest.approx(ece)
    assert C.expected_calibration_error([0.35, 0.4], [0, 1]) == pytest.approx(0.125)
