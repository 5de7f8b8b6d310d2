"""Metrics and patient-level bootstrap intervals against hand-worked cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from inference.ml import metrics as M


def test_confusion_and_metrics_hand_worked():
    # labels:  1 1 1 0 0 0 0 ; scores >= 0.5 abnormal
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4]
    assert M.confusion(y, s, 0.5) == (3, 1, 1, 2)  # tn, fp, fn, tp
    m = M.binary_metrics(y, s, 0.5)
    assert m["confusion"] == [[3, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(3 / 4)
    # AUC by hand: pairs (pos, neg) with pos > neg: 0.9 beats all 4, 0.6 beats 3 (not 0.7), 0.2 beats 1 -> 8/12
    assert m["auc"] == pytest.approx(8 / 12)


def test_threshold_is_inclusive_and_undefined_metrics_are_none():
    assert M.confusion([1, 0], [0.5, 0.49], 0.5) == (1, 0, 0, 1)
    m = M.binary_metrics([0, 0], [0.1, 0.9], 0.5)
    assert m["sensitivity"] is None and m["npv"] == 1.0 and m["auc"] is None
    assert m["balanced_accuracy"] is None


def test_auc_ties_count_half():
    assert M.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert M.auc([1, 1, 0], [0.8, 0.5, 0.5]) == pytest.approx(0.75)


def test_threshold_curve_counts():
    curve = M.threshold_curve([1, 0, 1], [0.2, 0.5, 0.8], [0.0, 0.5, 0.9])
    assert [(c["tn"], c["fp"], c["fn"], c["tp"]) for c in curve] == [(0, 1, 0, 2), (0, 1, 1, 1), (1, 0, 2, 0)]
    assert curve[2]["sensitivity"] == 0.0 and curve[2]["specificity"] == 1.0


def test_bootstrap_two_patients_hand_worked():
    # patient A: one right call, patient B: one wrong call. Resampled pairs AA, AB, BA, BB give
    # accuracy 1, 0.5, 0.5, 0 with chances 1/4, 1/2, 1/4 -> the 95% interval is [0, 1].
    ci = M.bootstrap_ci([1, 1], [0.9, 0.1], ["A", "B"], 0.5, M.Bootstrap(n=2000, seed=1))
    assert ci["accuracy_ci"] == [0.0, 1.0]
    assert ci["sensitivity_ci"] == [0.0, 1.0]
    assert ci["specificity_ci"] is None  # no normals in any replicate
    assert ci["auc_ci"] is None


def test_bootstrap_resamples_by_patient_not_by_image():
    # patient A: 9 images all right; patient B: 1 image wrong. Image accuracy 0.9.
    # By patient the replicates are AA (1.0), AB/BA (0.9), BB (0.0): BB happens 1/4 of the time,
    # so the lower bound is 0. Resampling images instead would give roughly [0.7, 1.0].
    y = [1] * 10
    s = [0.9] * 9 + [0.1]
    g = ["A"] * 9 + ["B"]
    ci = M.bootstrap_ci(y, s, g, 0.5, M.Bootstrap(n=1000, seed=0))
    assert ci["accuracy_ci"][0] == 0.0 and ci["accuracy_ci"][1] == 1.0
    per_image = M.bootstrap_ci(y, s, list(range(10)), 0.5, M.Bootstrap(n=1000, seed=0))
    assert 0.6 <= per_image["accuracy_ci"][0] <= 0.8


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.clip(y * 0.3 + rng.random(60) * 0.7, 0, 1)
    g = np.repeat(np.arange(20), 3)
    a = M.bootstrap_ci(y, s, g, 0.5, M.Bootstrap(n=300, seed=7))
    b = M.bootstrap_ci(y, s, g, 0.5, M.Bootstrap(n=300, seed=7))
    c = M.bootstrap_ci(y, s, g, 0.5, M.Bootstrap(n=300, seed=8))
    assert a == b and a != c
    point = M.binary_metrics(y, s, 0.5)
    for name in M.CI_METRICS:
        lo, hi = a[f"{name}_ci"]
        assert lo <= point[name] <= hi, name


def test_weighted_bootstrap_auc_matches_sklearn_on_a_replicate():
    # the vectorised AUC of one replicate equals roc_auc_score on the explicitly duplicated cases
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.random(40), 1)  # ties on purpose
    g = np.repeat(np.arange(10), 4)
    patients, inverse = np.unique(g, return_inverse=True)
    weights = np.zeros((1, 10))
    for p in [0, 0, 3, 4, 4, 4, 7, 8, 9, 9]:
        weights[0, p] += 1
    got = M._weighted_auc(y, s, inverse, 10, weights)[0]
    idx = np.concatenate([np.where(g == p)[0] for p in [0, 0, 3, 4, 4, 4, 7, 8, 9, 9]])
    assert got == pytest.approx(roc_auc_score(y[idx], s[idx]))


def test_mismatched_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        M.confusion([1, 0], [0.1], 0.5)
    with pytest.raises(ValueError, match="0 or 1"):
        M.confusion([2], [0.1], 0.5)


def test_predictive_values_at_a_prevalence_hand_worked():
    # sensitivity 0.9, specificity 0.8 at 1%: PPV = 0.009 / (0.009 + 0.198), NPV = 0.792 / (0.792 + 0.001)
    got = M.predictive_values(0.9, 0.8, 0.01)
    assert got["prevalence"] == 0.01
    assert got["ppv"] == pytest.approx(0.009 / 0.207) and got["npv"] == pytest.approx(0.792 / 0.793)
    # at the test set's own prevalence it gives back the confusion matrix's PPV and NPV
    tn, fp, fn, tp = 40, 10, 5, 45
    m = M.metrics_from_confusion(tn, fp, fn, tp)
    at_test = M.predictive_values(m["sensitivity"], m["specificity"], (tp + fn) / (tn + fp + fn + tp))
    assert at_test["ppv"] == pytest.approx(m["ppv"]) and at_test["npv"] == pytest.approx(m["npv"])
    # PPV rises and NPV falls with prevalence
    assert M.predictive_values(0.9, 0.8, 0.2)["ppv"] > got["ppv"] > M.predictive_values(0.9, 0.8, 0.001)["ppv"]
    assert M.predictive_values(0.9, 0.8, 0.2)["npv"] < got["npv"]
    # undefined inputs and denominators are None; a perfect test is 1
    assert M.predictive_values(None, 0.8, 0.01) == {"prevalence": 0.01, "ppv": None, "npv": None}
    assert M.predictive_values(0.0, 1.0, 0.5)["ppv"] is None
    assert M.predictive_values(1.0, 1.0, 0.01) == {"prevalence": 0.01, "ppv": 1.0, "npv": 1.0}
    for bad in (0, 1, -0.1, 1.5, "x", None):
        with pytest.raises(ValueError, match="prevalence"):
            M.predictive_values(0.9, 0.8, bad)


def test_sensitivity_by_size_strata_and_wilson_intervals():
    lesions = [(8.0, False), (9.9, True), (10.0, True), (19.0, True), (25.0, False), (40.0, True), (41.0, True)]
    strata = M.sensitivity_by_size(lesions)
    assert [(s["label"], s["detected"], s["total"]) for s in strata] == [
        ("< 10 mm", 1, 2), ("10–20 mm", 2, 2), ("20–40 mm", 0, 1), ("≥ 40 mm", 2, 2)]  # an edge goes up
    assert strata[0]["sensitivity"] == 0.5 and strata[2]["sensitivity"] == 0.0
    # Wilson score interval, 1 of 2: p +- z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), z = 1.96
    z, n, p = 1.959964, 2, 0.5
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert strata[0]["ci"] == pytest.approx([centre - half, centre + half], abs=1e-4)
    assert strata[1]["ci"][1] == 1.0 and 0 < strata[1]["ci"][0] < 1 and strata[2]["ci"][0] == 0.0
    empty = M.sensitivity_by_size([], edges=(10.0,))
    assert [(s["label"], s["total"], s["sensitivity"], s["ci"]) for s in empty] == [("< 10 mm", 0, None, None),
                                                                                   ("≥ 10 mm", 0, None, None)]
    for bad in (0.0, -3.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of mm"):
            M.sensitivity_by_size([(bad, True)])
