"""Every number the dashboards show about an evaluated run, recomputed here from the run's own
``predictions.csv`` with scikit-learn and numpy written in this file (not the project's metrics, operating-value or
calibration code): scan, patient and image AUC, ROC points, confusion matrices and the six metrics at the operating
value, patient-grouped bootstrap intervals, threshold curves, the per-scan verdict rows, the precision-recall curve
and average precision, the reliability diagram and its ECE, PPV/NPV at a prevalence (Bayes), and the threshold,
curves and prevalence answers of the API; with odd but legal inputs (ties, one class, one patient, equal scores,
a patient with several scans, a per-gland run)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

# --- the independent computation -------------------------------------------------------------------------------

METRIC_NAMES = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv")


def _rows(run) -> list[dict]:
    from inference.services.evaluation import predictions_path

    with open(predictions_path(run), newline="") as fh:
        return list(csv.DictReader(fh))


def _scans(rows: list[dict], split: str, aggregator: str, k: int) -> list[dict]:
    """One dict per scan of ``split``: the aggregator's score as the README states the rule."""
    by_scan: dict[str, list[dict]] = {}
    for r in rows:
        if r["split"] == split:
            by_scan.setdefault(r["series_uid"], []).append(r)
    out = []
    for uid, images in by_scan.items():
        p = np.array([float(r["prob"]) for r in images])
        if aggregator == "fraction":
            score = np.mean(p >= 0.5)
        elif aggregator == "mean":
            score = p.mean()
        elif aggregator == "topk":
            score = np.sort(p)[::-1][:k].mean()
        elif aggregator == "max":
            score = p.max()
        else:  # sides: each gland by the mean of its top-k, the scan by the higher gland
            per_side: dict[str, list[float]] = {}
            for r in images:
                per_side.setdefault(r.get("side", ""), []).append(float(r["prob"]))
            score = max(np.sort(v)[::-1][:k].mean() for v in per_side.values())
        out.append({"uid": uid, "patient": images[0]["patient"], "label": int(images[0]["label"]),
                    "score": float(score)})
    return out


def _metrics(y: np.ndarray, called: np.ndarray) -> dict:
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, called, labels=[0, 1]).ravel())
    ratio = lambda a, b: a / b if b else None  # noqa: E731
    sens, spec = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {"confusion": [[tn, fp], [fn, tp]], "accuracy": ratio(tp + tn, len(y)), "sensitivity": sens,
            "specificity": spec, "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "balanced_accuracy": None if sens is None or spec is None else (sens + spec) / 2}


def _bootstrap(y, s, patients, value, n, seed, level=0.95) -> dict:
    """Percentile intervals over ``n`` resamples of the patients (every scan of a drawn patient, as often as it
    was drawn), the patients drawn as the evaluation's documented seeded generator draws them; each resample's
    metrics by scikit-learn on the resampled cases themselves."""
    names = np.unique(patients)
    cases = {p: np.flatnonzero(patients == p) for p in names}
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n, len(names)))
    values: dict[str, list[float]] = {m: [] for m in ("auc", *METRIC_NAMES)}
    for draw in draws:
        idx = np.concatenate([cases[names[j]] for j in draw])
        if np.unique(y[idx]).size == 2:
            values["auc"].append(roc_auc_score(y[idx], s[idx]))
        for m, v in _metrics(y[idx], s[idx] >= value).items():
            if m != "confusion" and v is not None:
                values[m].append(v)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {m: [float(x) for x in np.percentile(v, q)] if v else None for m, v in values.items()}


def _bayes(sens, spec, p):
    ppv_den, npv_den = sens * p + (1 - spec) * (1 - p), spec * (1 - p) + (1 - sens) * p
    return (sens * p / ppv_den if ppv_den else None), (spec * (1 - p) / npv_den if npv_den else None)


def _ece(y, p, bins=10):
    """ECE over the reliability diagram's own bins (scikit-learn ``calibration_curve``, uniform)."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p), minlength=bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / len(p) * np.abs(prob_true - prob_pred)))


def _same(got, want, tol=1e-9):
    if got is None or want is None:
        return got is None and want is None
    return np.shape(got) == np.shape(want) and np.allclose(np.asarray(got, float), np.asarray(want, float), atol=tol)


def _patients(scans: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A patient is abnormal when any of their scans is; scored by their highest scan."""
    by: dict[str, tuple[int, float]] = {}
    for x in scans:
        old = by.get(x["patient"], (0, -np.inf))
        by[x["patient"]] = (max(old[0], x["label"]), max(old[1], x["score"]))
    names = list(by)
    return names, np.array([by[p][0] for p in names]), np.array([by[p][1] for p in names])


def disagreements(ev, run, client) -> list:
    """Every number of the stored evaluation and of the API that differs from the independent computation."""
    rows, r, bad = _rows(run), ev.result, []
    n, seed = r["bootstrap"]["n"], r["bootstrap"]["seed"]
    assert r["bootstrap"]["resampled_by"] == "patient"

    def compare(where, stored: dict, y, s, groups, value):
        want = _metrics(y, s >= value)
        bad.extend((where, m, stored[m], want[m]) for m in want if not _same(stored[m], want[m]))
        auc = roc_auc_score(y, s) if np.unique(y).size == 2 else None
        if not _same(stored["auc"], auc):
            bad.append((where, "auc", stored["auc"], auc))
        for m, interval in _bootstrap(y, s, groups, value, n, seed).items():
            if not _same(stored[f"{m}_ci"], interval):
                bad.append((where, f"{m}_ci", stored[f"{m}_ci"], interval))
        if auc is not None:
            fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
            if not (_same(stored["roc"]["fpr"], fpr, 1e-6) and _same(stored["roc"]["tpr"], tpr, 1e-6)):
                bad.append((where, "roc"))
            # each stored threshold gives its own point, on the scores stored beside it (the page's; they are
            # checked against these within 1e-9 below: a mean summed in another order differs in the last bit)
            own_y, own_s = (np.array([lab for _, lab, _ in stored["scores"]]), np.array([v for v, _, _ in stored["scores"]])) \
                if "scores" in stored else (y, s)
            for t, x, yy in zip(stored["roc"]["thresholds"], stored["roc"]["fpr"], stored["roc"]["tpr"]):
                at = _metrics(own_y, own_s >= t)
                if not _same([1 - at["specificity"], at["sensitivity"]], [x, yy], 1e-6):
                    bad.append((where, "roc threshold", t, (x, yy)))
        elif stored["roc"]["fpr"]:
            bad.append((where, "roc of one class"))
        for point in stored.get("threshold_curve", []):
            if [[point["tn"], point["fp"]], [point["fn"], point["tp"]]] != _metrics(y, s >= point["threshold"])["confusion"]:
                bad.append((where, "threshold curve", point["threshold"]))

    for agg, stored in r["aggregators"].items():
        k = stored.get("top_k", 5)
        test = _scans(rows, "test", agg, k)
        y, s = np.array([x["label"] for x in test]), np.array([x["score"] for x in test])
        value = stored["operating_value"]
        # the value: the best out-of-fold accuracy over every value that does not call all scans one class
        oof = _scans(rows, "trainval", agg, k)
        oy, os_ = np.array([x["label"] for x in oof]), np.array([x["score"] for x in oof])
        u = np.unique(os_)
        values = [t for t in np.concatenate([u, (u[:-1] + u[1:]) / 2, [u[-1] + 1]])
                  if 0 < np.sum(os_ >= t) < len(os_)] or [u[0]]
        if r["objective"] == "accuracy" and not np.isclose(np.mean((os_ >= value) == oy),
                                                           max(np.mean((os_ >= t) == oy) for t in values)):
            bad.append((agg, "out-of-fold accuracy is not the best", value))
        compare(f"scan/{agg}", stored, y, s, np.array([x["patient"] for x in test]), value)
        c = client
        want = _metrics(y, s >= value)
        for asked in ({}, {"value": value}, {"value": 0.0}, {"value": 0.5}, {"value": 1.0}):
            at = c.get(f"/api/evaluations/{ev.pk}/threshold/", {"aggregator": agg, **asked}).json()
            if at["confusion"] != _metrics(y, s >= asked.get("value", value))["confusion"]:
                bad.append((agg, "threshold API", asked, at["confusion"]))
        names, py, ps = _patients(test)
        at = c.get(f"/api/evaluations/{ev.pk}/threshold/", {"aggregator": agg, "level": "patient"}).json()
        if at["confusion"] != _metrics(py, ps >= value)["confusion"]:
            bad.append((agg, "patient threshold API", at["confusion"]))
        curves = c.get(f"/api/evaluations/{ev.pk}/curves/", {"aggregator": agg, "level": "patient"}).json()
        if curves["operating_value"] != value or curves["aggregator"] != agg:
            bad.append((agg, "patient curves API value", curves["operating_value"], curves["aggregator"]))
        if np.unique(py).size == 2:
            fpr, tpr, _ = roc_curve(py, ps, drop_intermediate=False)
            if not (_same(curves["roc"]["fpr"], fpr, 1e-6) and _same(curves["roc"]["tpr"], tpr, 1e-6)):
                bad.append((agg, "patient curves API roc"))
        for point in curves["threshold_curve"]:
            if [[point["tn"], point["fp"]], [point["fn"], point["tp"]]] != _metrics(py, ps >= point["threshold"])["confusion"]:
                bad.append((agg, "patient curves API threshold curve", point["threshold"]))
                break
        answer = c.get(f"/api/evaluations/{ev.pk}/prevalence/", {"aggregator": agg, "prevalence": 0.05}).json()
        if not (_same(answer["sensitivity"], want["sensitivity"]) and _same(answer["specificity"], want["specificity"])):
            bad.append((agg, "prevalence API sensitivity/specificity", answer))
        elif want["sensitivity"] is not None and want["specificity"] is not None:
            ppv, npv = _bayes(want["sensitivity"], want["specificity"], 0.05)
            if not (_same(answer["ppv"], ppv) and _same(answer["npv"], npv)):
                bad.append((agg, "prevalence API", answer, ppv, npv))
        curves = c.get(f"/api/evaluations/{ev.pk}/curves/", {"aggregator": agg}).json()
        if curves["roc"] != stored["roc"] or curves["operating_value"] != value:
            bad.append((agg, "curves API"))
        # what the page's slider reads: the stored scores, against the operating value
        stored_scores = np.array([v for v, _, _ in stored["scores"]], float)
        if not _same(sorted(stored_scores), sorted(s)):
            bad.append((agg, "stored scores", stored["scores"]))
        if _metrics(np.array([lab for _, lab, _ in stored["scores"]]), stored_scores >= value)["confusion"] != want["confusion"]:
            bad.append((agg, "the page's scores"))

    agg, value = r["aggregator"], r["operating_value"]
    k = r["aggregators"][agg].get("top_k", 5)
    test = _scans(rows, "test", agg, k)
    y, s = np.array([x["label"] for x in test]), np.array([x["score"] for x in test])
    if r["scan"]["confusion"] != _metrics(y, s >= value)["confusion"]:
        bad.append(("scan", "confusion"))
    # the per-scan verdict rows
    by_uid = {x["uid"]: x for x in test}
    for row in c.get(f"/api/evaluations/{ev.pk}/scans/").json()["scans"]:
        x = by_uid[row["series_uid"]]
        called = x["score"] >= value
        outcome = ("tp" if x["label"] else "fp") if called else ("fn" if x["label"] else "tn")
        if (row["verdict"], row["label"], row["outcome"]) != ("abnormal" if called else "normal",
                                                              "abnormal" if x["label"] else "normal", outcome):
            bad.append(("scan row", row["series_uid"], row["verdict"], row["outcome"]))
        if (row["score"] >= value) != called:
            bad.append(("scan row score against the value", row["score"], value))
    # patient level (a patient abnormal when any scan is) and image level (each image at 0.5)
    names, py, ps = _patients(test)
    compare("patient", r["patient"], py, ps, np.array(names), value)
    images = [x for x in rows if x["split"] == "test"]
    # an image's own truth: its gland's (side_label) where a per-gland run knows it, else the scan's
    compare("image", r["image"], np.array([int((x.get("side_label") or "").strip() or x["label"]) for x in images]), np.array([float(x["prob"]) for x in images]),
            np.array([x["patient"] for x in images]), 0.5)
    # reading aids: precision-recall, average precision, the reliability diagram and its ECE, PPV/NPV at 1%
    aids = r["reading_aids"]
    want = _metrics(y, s >= value)
    if want["sensitivity"] is not None and want["specificity"] is not None:
        ppv, npv = _bayes(want["sensitivity"], want["specificity"], 0.01)
        if not (_same(aids["prevalence"]["ppv"], ppv) and _same(aids["prevalence"]["npv"], npv)):
            bad.append(("reading aids prevalence", aids["prevalence"], ppv, npv))
    if np.unique(y).size == 2:
        precision, recall, _ = precision_recall_curve(y, s)
        if not (_same(aids["pr"]["precision"], precision, 1e-4) and _same(aids["pr"]["recall"], recall, 1e-4)):
            bad.append(("precision-recall curve",))
        if not _same(aids["pr"]["average_precision"], average_precision_score(y, s), 1e-4):
            bad.append(("average precision", aids["pr"]["average_precision"], average_precision_score(y, s)))
        point = aids["pr"]["operating_point"]
        if not (_same(point["precision"], want["ppv"]) and _same(point["recall"], want["sensitivity"])):
            bad.append(("precision-recall operating point", point))
        fit = r["calibration"]["fit"]
        if fit["method"] == "temperature":
            a, b = fit["params"]["a"], fit["params"]["b"]
            z = np.log(np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6)))
            calibrated = 1 / (1 + np.exp(-(a * z + b)))
        elif fit["method"] == "isotonic":  # the stored knots (checked against scikit-learn's fit below)
            calibrated = np.interp(s, fit["params"]["x"], fit["params"]["y"])
        else:
            assert fit["method"] == "identity"
            calibrated = s
        for name, p in (("calibrated", calibrated), ("raw", s)):
            prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
            shown = aids["reliability"][name]
            if not (_same(shown["prob_true"], prob_true, 1e-4) and _same(shown["prob_pred"], prob_pred, 1e-4)):
                bad.append(("reliability diagram", name))
            if not _same(shown["ece"], _ece(y, p), 1e-4):
                bad.append(("ECE beside the diagram", name, shown["ece"], _ece(y, p)))
        test_cal = r["calibration"]["test"]
        for key, p in (("ece", calibrated), ("ece_raw", s)):
            if not _same(test_cal[key], _ece(y, p), 1e-9):
                bad.append(("calibration " + key, test_cal[key], _ece(y, p)))
    return bad


# --- cohorts ---------------------------------------------------------------------------------------------------


def _cohort(seed: int, n: int = 30):
    """Patients with one to three scans of 5-11 images; probabilities on a grid of eighths (exact in binary, so
    sums are exact), which makes ties within and across classes; fractions land on bin edges (0.2, 0.4, 0.5)."""
    rng = np.random.default_rng(seed)
    scans = []
    for i in range(n):
        label = int(i % 3 == 0)
        for _ in range(1 + (i % 4 == 1) + (i % 7 == 2)):
            centre = rng.uniform(0.35, 0.8) if label else rng.uniform(0.1, 0.55)
            probs = np.clip(np.round((centre + rng.normal(0, 0.2, rng.integers(5, 12))) * 8) / 8, 0, 1)
            scans.append((f"P{i:02d}", label, [float(p) for p in probs]))
    patients = sorted({p for p, _, _ in scans})
    test = patients[::4]
    rest = [p for p in patients if p not in test]
    return scans, test, [rest[k::4] for k in range(4)]


@pytest.fixture
def evaluate(make_run_from_predictions, users, client_as):
    """``evaluate(scans, test, folds, config)`` -> (run, evaluation, disagreements)."""
    from inference.ml.metrics import Bootstrap
    from inference.services.evaluation import evaluate_run

    client = client_as("lead")
    made = [0]

    def run_it(scans, test, folds, config=None):
        made[0] += 1
        run = make_run_from_predictions(scans, test, folds, config, members=[users["lead"]], name=f"rc{made[0]}")
        ev = evaluate_run(run, boot=Bootstrap(n=60, seed=made[0]))
        return run, ev, disagreements(ev, run, client)

    return run_it


@pytest.mark.parametrize("calibration, seed", [("identity", 0), ("temperature", 2)])
def test_every_number_matches_an_independent_computation(evaluate, calibration, seed):
    run, ev, bad = evaluate(*_cohort(seed), {"calibration": calibration})
    assert ev.result["scan"]["auc"] is not None and ev.result["patient"]["n"] < ev.result["scan"]["n"]
    assert bad == []


def test_a_test_score_on_the_operating_value_is_judged_alike_everywhere(evaluate):
    """Out-of-fold fractions 0 and 2/7 give the operating value 1/7; a test scan with one image of seven voted
    abnormal sits on it. Stored rounded to 6 decimals (0.142857) its score fell below the value: the threshold and
    prevalence answers and the page's slider called it a false negative (sensitivity 0) where the evaluation, its
    verdict row and the PPV/NPV beside it counted a true positive (sensitivity 1)."""
    two, none, one = [0.9, 0.9, *[0.1] * 5], [0.1] * 7, [0.9, *[0.1] * 6]
    scans = [("A1", 1, two), ("A2", 1, two), ("N1", 0, none), ("N2", 0, none), ("T1", 1, one), ("T2", 0, none)]
    run, ev, bad = evaluate(scans, ["T1", "T2"], [["A1", "N1"], ["A2", "N2"]])
    assert ev.operating_value == pytest.approx(1 / 7) and ev.result["scan"]["confusion"] == [[1, 0], [0, 1]]
    assert bad == []


def test_odd_but_legal_test_sets(evaluate):
    """Test patients of one class, a single test patient with three scans, every score equal, ties across classes,
    and a per-gland run (the ``sides`` rule, calibrated): still every number as computed independently."""
    folds = [["A1", "N1"], ["A2", "N2"]]
    train = [("A1", 1, [0.75, 0.625, 0.25]), ("A2", 1, [0.5, 0.75]), ("N1", 0, [0.25, 0.125]),
             ("N2", 0, [0.5, 0.25, 0.125])]
    cases = {
        "one class": (train + [("T1", 0, [0.5, 0.25]), ("T2", 0, [0.75, 0.75])], ["T1", "T2"], None),
        "one patient": (train + [("T1", 1, [0.5, 0.25]), ("T1", 1, [0.75, 0.75]), ("T1", 1, [0.25])], ["T1"], None),
        "equal scores": ([(p, lab, [0.5] * 3) for p, lab in (("A1", 1), ("A2", 1), ("N1", 0), ("N2", 0), ("T1", 1),
                                                              ("T2", 0))], ["T1", "T2"], None),
        "ties": (train + [("T1", 1, [0.5, 0.25]), ("T2", 0, [0.5, 0.25]), ("T3", 1, [0.75]), ("T3", 1, [0.125]),
                          ("T4", 0, [0.125, 0.25])], ["T1", "T2", "T3", "T4"], None),
        "per gland": ([("A1", 1, {"R": [0.75, 0.625, 0.25], "L": [0.125]}), ("A2", 1, {"R": [0.25], "L": [0.5, 0.75]}),
                       ("N1", 0, {"R": [0.25, 0.125], "L": [0.375]}), ("N2", 0, {"R": [0.5, 0.25, 0.125], "L": [0.25]}),
                       ("T1", 1, {"R": [0.5, 0.25], "L": [0.875, 0.125]}), ("T2", 0, {"R": [0.5, 0.25], "L": [0.25]}),
                       ("T3", 1, {"R": [0.75], "L": [0.125]}), ("T4", 0, {"R": [0.125, 0.25], "L": [0.625, 0.5]})],
                      ["T1", "T2", "T3", "T4"], {"aggregator": "sides", "calibration": "temperature"}),
    }
    for name, (scans, test, config) in cases.items():
        run, ev, bad = evaluate(scans, test, folds, config)
        assert bad == [], name
    assert ev.result["aggregator"] == "sides"


def test_a_per_gland_runs_image_level_counts_each_gland_by_its_own_truth(evaluate):
    """The image level of a per-gland run labelled each image with its scan's label, so the normal gland of a scan
    with a right-sided lesion counted as abnormal (a high 'false negative' count from glands nobody called
    abnormal). Each image now has its gland's truth where the side is known (predictions.csv ``side_label``), the
    scan's where it is not (T3: abnormal, side unknown), and the scan level is unchanged."""
    folds = [["A1", "N1"], ["A2", "N2"]]
    scans = [("A1", (1, "R"), {"R": [0.75, 0.625], "L": [0.125]}), ("A2", (1, "L"), {"R": [0.25], "L": [0.5, 0.75]}),
             ("N1", 0, {"R": [0.25, 0.125], "L": [0.375]}), ("N2", 0, {"R": [0.5, 0.25], "L": [0.25]}),
             ("T1", (1, "L"), {"R": [0.125, 0.25], "L": [0.875, 0.625]}), ("T2", 0, {"R": [0.5, 0.25], "L": [0.25]}),
             ("T3", 1, {"R": [0.75], "L": [0.125]}), ("T4", (1, "RL"), {"R": [0.625], "L": [0.75, 0.125]})]
    run, ev, bad = evaluate(scans, ["T1", "T2", "T3", "T4"], folds, {"aggregator": "sides"})
    assert bad == []
    # test images: T1 R 0,0 L 1,1; T2 all 0; T3 (side unknown) 1,1; T4 1,1,1 -> 7 abnormal, 5 normal
    tn, fp = ev.result["image"]["confusion"][0]
    fn, tp = ev.result["image"]["confusion"][1]
    assert (tn + fp, fn + tp) == (5, 7) and fp == 1 and fn == 2  # T2 R 0.5; T3 L 0.125 and T4 L 0.125


def test_the_value_and_the_calibration_come_from_out_of_fold_scans_only(evaluate, settings):
    """Scrambling the test probabilities changes no operating value and no calibration fit; the test patients are
    never train-val ones, the folds are disjoint, and each train-val image carries the fold that held its patient
    out. The isotonic fit is scikit-learn's on the out-of-fold scan scores."""
    from sklearn.isotonic import IsotonicRegression

    from inference.ml.metrics import Bootstrap
    from inference.services.evaluation import evaluate_run, predictions_path

    scans, test, folds = _cohort(5, n=40)
    run, ev, bad = evaluate(scans, test, folds, {"calibration": "isotonic"})
    rows = _rows(run)
    assert {r["patient"] for r in rows if r["split"] == "test"} <= set(run.split.test_patients)
    assert not {r["patient"] for r in rows if r["split"] == "trainval"} & set(run.split.test_patients)
    assert sum(map(len, run.split.folds)) == len(set().union(*map(set, run.split.folds)))
    fold_of = {p: k for k, f in enumerate(run.split.folds) for p in f}
    assert all(int(r["fold"]) == fold_of[r["patient"]] for r in rows if r["split"] == "trainval")
    oof = _scans(rows, "trainval", "fraction", 5)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        [x["score"] for x in oof], [x["label"] for x in oof])
    fit = ev.result["calibration"]["fit"]
    assert _same(fit["params"]["x"], iso.X_thresholds_) and _same(fit["params"]["y"], iso.y_thresholds_)

    rng = np.random.default_rng(9)
    for r in rows:
        if r["split"] == "test":
            r["prob"] = str(float(rng.random()))
    with open(predictions_path(run), "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    again = evaluate_run(run, boot=Bootstrap(n=10))
    assert again.result["calibration"]["fit"] == fit
    assert {a: v["operating_value"] for a, v in again.result["aggregators"].items()} == \
        {a: v["operating_value"] for a, v in ev.result["aggregators"].items()}


def test_sensitivity_by_lesion_size_judges_each_gland_by_its_own_unrounded_score(evaluate):
    """Per-gland run, out-of-fold value (0.5 + 0.60001) / 2 = 0.550005; a test gland scores 0.55004. Its lesion is
    found (as its scan's verdict says: a true positive), and the count and Wilson interval are those computed here;
    the side scores were stored rounded to 4 decimals (0.55) and the lesion counted as missed."""
    from scipy.stats import norm

    from annotations.models import SideFinding
    from inference.services.lesion_sizes import lesion_size_sensitivity

    scans = [("A1", 1, {"R": [0.60001, 0.60001], "L": [0.1]}), ("A2", 1, {"R": [0.1], "L": [0.60001, 0.60001]}),
             ("N1", 0, {"R": [0.5, 0.5], "L": [0.1]}), ("N2", 0, {"R": [0.1], "L": [0.5, 0.5]}),
             ("T1", 1, {"R": [0.55004, 0.55004], "L": [0.1]}), ("T2", 0, {"R": [0.2], "L": [0.2]})]
    run, ev, bad = evaluate(scans, ["T1", "T2"], [["A1", "N1"], ["A2", "N2"]], {"aggregator": "sides"})
    assert bad == [] and ev.operating_value == pytest.approx(0.550005)
    row = next(s for s in ev.result["scans"] if s["patient"] == "T1")
    assert row["outcome"] == "tp"
    SideFinding.objects.create(series_id=row["series_id"], side="R", lesion_centre_lps=[0.0, 0.0, 0.0],
                               lesion_diameter_mm=15.0)
    stratum = next(s for s in lesion_size_sensitivity(ev)["strata"] if s["total"])
    assert (stratum["label"], stratum["detected"], stratum["total"]) == ("10–20 mm", 1, 1)
    z = norm.ppf(0.975)  # Wilson (1927) for 1 of 1
    centre, half = (1 + z * z / 2) / (1 + z * z), z / (1 + z * z) * np.sqrt(z * z / 4)
    assert stratum["ci"] == pytest.approx([centre - half, centre + half], abs=1e-4)


@pytest.mark.slow
def test_a_real_small_per_gland_run(db, settings, tmp_path, training_cohort, users, client_as):
    """A real per-gland run (3 folds of the tests' tiny model on the synthetic cohort) through training, aggregation
    and evaluation: each train-val image's probability is the prediction of the fold model that held its patient
    out (recomputed here with that fold's own weights), and every number shown is as computed independently."""
    from adrenal_site.jobs.models import Job
    from inference.ml.metrics import Bootstrap
    from inference.ml.training import load_ensemble
    from inference.services import runs, training
    from inference.services.evaluation import evaluate_run
    from inference.services.gland_data import gland_scans, scan_sample
    from tests.inference.test_services_gland_runs import GLAND_TINY

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("real-ds", n_patients=15, build=False)
    ds.members.add(users["lead"])
    run = runs.create_run(ds, "tiny", Job.objects.create(kind="train", params={}), overrides=GLAND_TINY)
    training.prepare_run(run)
    for k in range(3):
        training.train_one_fold(run, k)
    training.aggregate_run(run)
    ev = evaluate_run(run, "accuracy", boot=Bootstrap(n=40))
    assert disagreements(ev, run, client_as("lead")) == []
    rows = _rows(run)
    out = runs.run_dir(run)
    folds = [load_ensemble([out / f"fold{k}" / "best.pt"], run.config) for k in range(3)]
    fold_of = {p: k for k, f in enumerate(run.split.folds) for p in f}
    checked = 0
    for scan in gland_scans(ds)[:4]:
        if scan.patient not in fold_of:
            continue
        k = fold_of[scan.patient]
        for side, bag in scan_sample(scan, run.config).bags.items():
            stored = [float(r["prob"]) for r in rows if r["series_uid"] == scan.series_uid and r["side"] == side]
            assert [int(r["fold"]) for r in rows if r["series_uid"] == scan.series_uid] == [k] * len(
                [r for r in rows if r["series_uid"] == scan.series_uid])
            by_fold = [np.asarray(f.predict(bag.images.astype("float32")), float).reshape(len(stored), -1)[:, 0]
                       for f in folds]
            assert np.allclose(stored, by_fold[k], atol=2e-6)
            assert not any(np.allclose(stored, by_fold[j], atol=2e-6) for j in range(3) if j != k)  # it tells them apart
            checked += 1
    assert checked


def test_the_compare_page_compares_only_runs_judged_on_the_same_test_scans_and_labels(
        make_run_from_predictions, users, client_as):
    """Two runs on one split version: the second was trained after a clinician relabelled test patient T2 (its
    predictions carry the new label), a third after T3 lost its label (no test rows). Each compare row's numbers are
    its evaluation's, recomputed here, and runs are grouped as compared "on the same test patients" only where
    their evaluations judged the same test scans against the same labels (they were all in one table)."""
    from inference.ml.metrics import Bootstrap
    from inference.models import TrainingRun
    from inference.services.evaluation import evaluate_run

    folds = [["A1", "N1"], ["A2", "N2"]]
    train = [("A1", 1, [0.75, 0.625]), ("A2", 1, [0.5, 0.75]), ("N1", 0, [0.25, 0.125]), ("N2", 0, [0.5, 0.25])]
    test = [("T1", 1, [0.75, 0.5]), ("T2", 0, [0.625, 0.5]), ("T3", 0, [0.25, 0.125]), ("T4", 0, [0.125, 0.25])]
    first = make_run_from_predictions(train + test, ["T1", "T2", "T3", "T4"], folds, members=[users["lead"]])
    relabelled = [(p, 1 if p == "T2" else lab, probs) for p, lab, probs in test]
    runs = [first]
    for scans in (train + relabelled, train + [t for t in test if t[0] != "T3"]):
        run = make_run_from_predictions(scans, ["T1", "T2", "T3", "T4"], folds, name=f"other{len(runs)}")
        TrainingRun.objects.filter(pk=run.pk).update(dataset=first.dataset, split=first.split)  # the same split
        run.refresh_from_db()
        runs.append(run)
    evaluations = [evaluate_run(run, boot=Bootstrap(n=20)) for run in runs]
    groups = client_as("lead").get("/api/runs/compare/").json()
    assert sorted(len(g["runs"]) for g in groups) == [1, 1, 1]
    for g in groups:
        (entry,) = g["runs"]
        ev = evaluations[[r.pk for r in runs].index(entry["run"])]
        rows = _rows(ev.run)
        scans = _scans(rows, "test", "fraction", 5)
        y, s = np.array([x["label"] for x in scans]), np.array([x["score"] for x in scans])
        want = _metrics(y, s >= ev.operating_value)
        assert entry["evaluation"]["scan"]["confusion"] == want["confusion"]
        assert _same(entry["evaluation"]["scan"]["sensitivity"], want["sensitivity"])
        assert _same(entry["evaluation"]["scan"]["auc"], roc_auc_score(y, s))
        assert g["test_patients"] == len({x["patient"] for x in scans})
    page = client_as("lead").get("/runs/compare/").content.decode()
    assert page.count('<table class="compare"') == 3 and page.count('class="muted split-shared"') == 3
