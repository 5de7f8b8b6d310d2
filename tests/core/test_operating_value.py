"""Scan aggregators and the operating value, chosen from out-of-fold train-val predictions only."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inference.ml import operating_value as OV


def write_predictions(path: Path, scans: list[dict], n_folds: int = 2) -> Path:
    """scans: {"uid", "patient", "label", "split", "fold", "probs": [...], "in_fold": [...] (optional)}."""
    cols = ["image_id", "series_id", "series_uid", "patient", "label", "slice_index", "z_mm", "split", "fold", "prob",
            *[f"prob_fold{k}" for k in range(n_folds)]]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        n = 0
        for sc in scans:
            for i, p in enumerate(sc["probs"]):
                n += 1
                row = {"image_id": n, "series_id": sc.get("series_id", sc["uid"]), "series_uid": sc["uid"],
                       "patient": sc["patient"], "label": sc["label"], "slice_index": i, "z_mm": -100 + 2.5 * i,
                       "split": sc["split"], "fold": sc.get("fold", "") if sc["split"] == "trainval" else "",
                       "prob": p}
                in_fold = sc.get("in_fold")
                for k in range(n_folds):
                    row[f"prob_fold{k}"] = in_fold[i] if in_fold else (p if sc["split"] == "test" else "")
                w.writerow(row)
    return path


def test_aggregators_hand_worked():
    probs = [0.1, 0.6, 0.5, 0.9, 0.2]
    assert OV.aggregate(probs, "fraction") == pytest.approx(3 / 5)  # 0.6, 0.5, 0.9 voted abnormal (>= 0.5)
    assert OV.aggregate(probs, "mean") == pytest.approx(2.3 / 5)
    assert OV.aggregate(probs, "topk", top_k=2) == pytest.approx(0.75)
    assert OV.aggregate(probs, "max") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown aggregator"):
        OV.aggregate(probs, "median")
    with pytest.raises(ValueError, match="without images"):
        OV.aggregate([], "mean")


def test_objectives_parse():
    assert str(OV.parse_objective("accuracy")) == "accuracy"
    assert OV.parse_objective("sensitivity>=0.95").target == pytest.approx(0.95)
    assert OV.parse_objective("sens:90").target == pytest.approx(0.9)
    assert str(OV.parse_objective("spec:90")) == "specificity>=0.9"
    assert OV.parse_objective("specificity>=0.95") == OV.Objective("specificity", 0.95)
    assert OV.parse_objective("specificity>=90%") == OV.Objective("specificity", 0.9)
    for bad in ("specificity>=0.2", "sens:2", "sensitivity>=1.2.3", "spec>=40%"):
        with pytest.raises(ValueError, match="outside 0.5-1|not a number"):
            OV.parse_objective(bad)
    for bad in ("spec>=101", "specificity>=101%"):
        with pytest.raises(ValueError, match="is above 100%"):
            OV.parse_objective(bad)
    with pytest.raises(ValueError, match="unknown objective"):
        OV.parse_objective("f1")


def _oof(scans):
    rows = []
    for sc in scans:
        for i, p in enumerate(sc["probs"]):
            rows.append(OV.ImageRow(str(len(rows)), sc["uid"], sc["uid"], sc["patient"], sc["label"], i, float(i),
                                    "trainval", sc.get("fold", 0), p))
    return OV.OutOfFold(rows)


def test_choice_by_objective_hand_worked():
    # scan fractions: normals 0.0, 0.2, 0.5 ; abnormals 0.4, 0.8, 1.0
    def scan(uid, label, frac):
        n_ab = round(frac * 10)
        return {"uid": uid, "patient": uid, "label": label, "probs": [0.9] * n_ab + [0.1] * (10 - n_ab)}

    oof = _oof([scan("n1", 0, 0.0), scan("n2", 0, 0.2), scan("n3", 0, 0.5),
                scan("a1", 1, 0.4), scan("a2", 1, 0.8), scan("a3", 1, 1.0)])
    # candidates: 0.0, 0.1, 0.3, 0.45, 0.65, 0.9, 1.000001
    # accuracy: t=0.3 -> 5/6? abn>=0.3: n3,a1,a2,a3 -> tp 3, fp 1, tn 2 -> 5/6;  t=0.65 -> tp 2, tn 3 -> 5/6; lowest wins
    acc = OV.choose_operating_value(oof, "accuracy")
    assert acc.operating_value == pytest.approx(0.3)
    assert acc.oof_metrics["accuracy"] == pytest.approx(5 / 6)
    assert acc.oof_metrics["confusion"] == [[2, 1], [0, 3]]
    # Youden at 0.3: 1 + 2/3 - 1 = 0.667; at 0.65: 2/3 + 1 - 1 = 0.667 -> lowest, 0.3
    assert OV.choose_operating_value(oof, "youden").operating_value == pytest.approx(0.3)
    # sensitivity >= 0.95 -> all three abnormal called: highest such value is 0.3 (0.4 must be >= t)
    sens = OV.choose_operating_value(oof, "sensitivity>=0.95")
    assert sens.operating_value == pytest.approx(0.3) and sens.oof_metrics["sensitivity"] == 1.0
    # sensitivity >= 0.6 -> two of three suffice: highest value is 0.65
    assert OV.choose_operating_value(oof, "sensitivity>=0.6").operating_value == pytest.approx(0.65)
    # specificity >= 0.95 -> all three normal called normal: the lowest such value is 0.65 (0.5 must be < t)
    spec = OV.choose_operating_value(oof, "specificity>=0.95")
    assert spec.operating_value == pytest.approx(0.65) and spec.oof_metrics["specificity"] == 1.0
    assert spec.oof_metrics["sensitivity"] == pytest.approx(2 / 3) and spec.objective == "specificity>=0.95"
    # specificity >= 0.6 -> two of three normals suffice: the lowest value is 0.3 (n1, n2 below it)
    assert OV.choose_operating_value(oof, "specificity>=0.6").operating_value == pytest.approx(0.3)
    # another aggregator is chosen on its own scale
    assert OV.choose_operating_value(oof, "accuracy", aggregator="max").aggregator == "max"


def test_operating_value_uses_out_of_fold_predictions_only(tmp_path):
    """Out-of-fold train-val predictions put the best-accuracy value at 0.5. The in-fold per-fold columns of
    the same images, and the test rows, are built to point elsewhere (1.0 and 0.3): if either leaked into
    the choice, the chosen value would move."""
    def probs(frac):
        k = round(frac * 5)
        return [0.9] * k + [0.1] * (5 - k)

    scans = []
    # out-of-fold fractions: normals 0.0, 0.2, 0.4 ; abnormals 0.6, 0.8, 1.0 -> only 0.5 separates them
    for uid, label, frac in [("n1", 0, 0.0), ("n2", 0, 0.2), ("n3", 0, 0.4),
                             ("a1", 1, 0.6), ("a2", 1, 0.8), ("a3", 1, 1.0)]:
        # in-fold predictions (from models that trained on these images): every image 0.9 -> fraction 1.0
        scans.append({"uid": uid, "patient": uid, "label": label, "split": "trainval", "fold": int(uid[1]) % 2,
                      "probs": probs(frac), "in_fold": [0.9] * 5})
    # test scans contradict: normals at 0.6, abnormals at 0.4
    for uid, label, frac in [("t1", 0, 0.6), ("t2", 0, 0.6), ("t3", 0, 0.6),
                             ("t4", 1, 0.4), ("t5", 1, 0.4), ("t6", 1, 0.4)]:
        scans.append({"uid": uid, "patient": uid, "label": label, "split": "test", "probs": probs(frac)})
    rows = OV.read_predictions_csv(write_predictions(tmp_path / "predictions.csv", scans))
    oof, test = OV.split_rows(rows)
    assert len(oof) == 30 and len(test) == 30
    assert all(r.prob_folds == () for r in oof.rows)  # in-fold columns are dropped on the way in

    choice = OV.choose_operating_value(oof, "accuracy")
    assert choice.operating_value == pytest.approx(0.5)
    assert choice.n_scans == 6 and choice.oof_metrics["accuracy"] == 1.0

    # the same chooser fed what a leak would feed it gives other values, so the assertion above would fail
    as_trainval = [OV.ImageRow(**{**r.__dict__, "split": "trainval", "fold": r.fold or 0}) for r in rows]
    assert OV.choose_operating_value(OV.OutOfFold(as_trainval), "accuracy").operating_value == pytest.approx(0.3)
    with_in_fold = [OV.ImageRow(**{**r.__dict__, "prob": r.prob_folds[0]})
                    for r in rows if r.split == "trainval"]
    assert OV.choose_operating_value(OV.OutOfFold(with_in_fold), "accuracy").operating_value == pytest.approx(1.0)

    # and it is structurally impossible to pass test rows or any other table
    with pytest.raises(ValueError, match="out-of-fold train-val predictions only"):
        OV.OutOfFold(rows)
    with pytest.raises(TypeError, match="OutOfFold"):
        OV.choose_operating_value(test, "accuracy")
    with pytest.raises(TypeError):
        OV.choose_operating_value(OV.ImageTable(tuple(rows)), "accuracy")
    with pytest.raises(ValueError, match="no held-out fold"):
        OV.OutOfFold([OV.ImageRow(**{**r.__dict__, "fold": None}) for r in oof.rows])


def test_bad_predictions_file_names_the_problem(tmp_path):
    p = tmp_path / "predictions.csv"
    p.write_text("series_uid,patient,label,split,prob\nS1,P1,1,trainval,1.7\n")
    with pytest.raises(ValueError, match=r"line 2: prob 1.7 outside"):
        OV.read_predictions_csv(p)
    p.write_text("series_uid,patient,label,prob\n")
    with pytest.raises(ValueError, match="missing columns"):
        OV.read_predictions_csv(p)


def _oof_scores(scores_labels, side=""):
    rows = []
    for n, (score, label) in enumerate(scores_labels):
        rows.append(OV.ImageRow(str(n), f"s{n}", f"s{n}", f"p{n}", label, 0, 0.0, "trainval", n % 2, score, (), side))
    return OV.OutOfFold(rows)


def test_chooser_never_calls_every_scan_one_class_when_a_value_separates():
    # 8 normals, 2 abnormals, the abnormals in the middle: calling all normal is 80% accurate, and so is the
    # best separating value (0.55: tp 1, fp 1 -> 8/10); it must be the separating one, by Youden's J
    data = [(0.1, 0), (0.2, 0), (0.3, 0), (0.4, 0), (0.5, 0), (0.6, 1), (0.7, 0), (0.8, 1), (0.9, 0), (0.95, 0)]
    oof = _oof_scores(data)
    choice = OV.choose_operating_value(oof, "accuracy", "max")
    tn, fp = choice.oof_metrics["confusion"][0]
    fn, tp = choice.oof_metrics["confusion"][1]
    assert tp + fp > 0 and tn + fn > 0, choice  # not everything one class
    assert choice.oof_metrics["accuracy"] <= 0.8 + 1e-9
    # a target sensitivity only "reached" by calling everything abnormal: the separating value with the most
    # sensitivity instead (here 0.55: both abnormals, 5 normals below)
    hard = _oof_scores([(0.1, 1), (0.2, 0), (0.3, 0), (0.6, 1), (0.7, 0)])
    c = OV.choose_operating_value(hard, "sensitivity>=0.95", "max")
    assert 0.1 < c.operating_value <= 0.7 and c.oof_metrics["sensitivity"] == 0.5
    # ties on the objective go to the complement: Youden ties between 0.35 and 0.65; accuracy decides (0.65)
    tie = _oof_scores([(0.1, 0), (0.2, 0), (0.3, 0), (0.4, 1), (0.5, 0), (0.6, 0), (0.7, 1), (0.8, 1)])
    y = OV.choose_operating_value(tie, "youden", "max")
    assert y.operating_value == pytest.approx(0.65) and y.oof_metrics["accuracy"] == pytest.approx(7 / 8)


def test_sides_aggregator_scores_each_gland_and_takes_the_max():
    rows = []
    for i, (side, p) in enumerate([("R", 0.1), ("R", 0.2), ("R", 0.3), ("L", 0.9), ("L", 0.7), ("L", 0.1)]):
        rows.append(OV.ImageRow(str(i), "s", "s", "p", 1, i % 3, 0.0, "test", None, p, (), side))
    scans = OV.scan_scores(OV.TestImages(rows), "sides")
    assert scans.sides[0] == {"L": pytest.approx(0.8), "R": pytest.approx(0.25)}
    assert scans.score == [pytest.approx(0.8)]
    assert OV.scan_scores(OV.TestImages(rows), "sides", top_k=1).score == [pytest.approx(0.9)]
