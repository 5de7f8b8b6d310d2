#!/usr/bin/env python
"""Why the operating value chosen out-of-fold transfers as it does, from a finished quality benchmark run's saved
fold models (``bench_model_quality.py --out DIR``: ``DIR/<preset>/fold<k>/best.pt``), without training again.

For the train and test cohorts of that run (the same seeds, sizes and ``--real-fraction``, read from the cache) it
scores every train-val and test scan with each fold model, then prints, for each way of combining the fold
models, the out-of-fold and test scan AUC and the test sensitivity/specificity at each objective's out-of-fold
value:

- ``images``: the fold models' image probabilities averaged, then the per-gland rule (what the app does);
- ``scan scores``: each fold model's scan score by the per-gland rule, averaged;
- ``median`` / ``vote``: their median, or the share of fold models at or above the value (abnormal from 1/2);
- ``centred``: each fold model's image logits centred and scaled on its normal train-val glands (median and
  standard deviation), so the five models score on one scale, then averaged as ``images``.

It also prints each fold model's mean score on the normal test scans (how far the models' scales differ).
Measured results: README, "Model quality" (2026-12-07 evening).

Usage: ``python benchmarks/analyse_operating_value.py --out DIR --train-seed A --test-seed B
[--train-patients 32] [--test-patients 40] [--real-fraction 1.0] [--preset fast] [--cache DIR]``
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model_quality as B  # noqa: E402  (puts the repository on the path)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from inference.ml import metrics as M  # noqa: E402
from inference.ml import operating_value as OV  # noqa: E402
from inference.ml.ensemble import Ensemble  # noqa: E402
from inference.ml.presets import preset_config  # noqa: E402
from inference.ml.splits import make_split  # noqa: E402
from inference.ml.training import model_for  # noqa: E402

OBJECTIVES = ("youden", "specificity>=0.9", "sensitivity>=0.95")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _scans(samples, probs: dict, split: str, folds: dict) -> OV.ScanScores:
    rows = B.image_rows(samples, probs, split, folds)
    return OV.scan_scores(OV.OutOfFold(rows) if split == "trainval" else OV.TestImages(rows), "sides")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the quality benchmark's --out folder")
    ap.add_argument("--train-seed", type=int, required=True)
    ap.add_argument("--test-seed", type=int, required=True)
    ap.add_argument("--train-patients", type=int, default=32)
    ap.add_argument("--test-patients", type=int, default=40)
    ap.add_argument("--real-fraction", type=float, default=0.25)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache", default=None)
    a = ap.parse_args()
    args = types.SimpleNamespace(cache=a.cache, real_fraction=a.real_fraction, boxes="proposed", labels="side")
    cfg = preset_config(a.preset, None)
    cfg["n_folds"] = a.folds
    train, _ = B.cohort(args, a.train_seed, a.train_patients, cfg["image"])
    test, _ = B.cohort(args, a.test_seed, a.test_patients, cfg["image"], labels="side")
    split = make_split({s.patient: s.label for s in train}, test_fraction=0.0, n_folds=a.folds,
                       seed=int(cfg.get("seed", 0)))
    fold_of = {p: f for f, ps in enumerate(split.folds) for p in ps}
    models = []
    for f in range(a.folds):
        m, _ = model_for(cfg)
        m.load_state_dict(torch.load(Path(a.out) / a.preset / f"fold{f}" / "best.pt", map_location="cpu",
                                     weights_only=True))
        models.append(Ensemble([m.eval()], cfg, "cpu"))
    train_p = [B.predict_probs(e.predict, train) for e in models]  # every fold model on every train-val scan
    test_p = [B.predict_probs(e.predict, test) for e in models]
    folds = range(a.folds)

    normal_glands = [f"{s.scan}/{side}" for s in train for side in s.bags if not s.side_truth[side]]
    centre = []
    for f in folds:
        z = np.concatenate([_logit(train_p[f][k]) for k in normal_glands])
        centre.append((float(np.median(z)), float(np.std(z)) or 1.0))

    def centred(f: int, p: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(_logit(p) - centre[f][0]) / centre[f][1]))

    def oof_of(transform) -> OV.OutOfFold:
        probs = {k: transform(fold_of[s.patient], train_p[fold_of[s.patient]][k])
                 for s in train for k in (f"{s.scan}/{side}" for side in s.bags)}
        return OV.OutOfFold(B.image_rows(train, probs, "trainval", fold_of))

    plain = oof_of(lambda f, p: p)
    y = None
    fold_scores = []
    for f in folds:
        sc = _scans(test, test_p[f], "test", {})
        y, s, _ = sc.arrays()
        fold_scores.append(s)
    fold_scores = np.array(fold_scores)
    combos = {
        "images": (plain, _scans(test, {k: np.mean([test_p[f][k] for f in folds], 0) for k in test_p[0]},
                                 "test", {}).arrays()[1]),
        "scan scores": (plain, fold_scores.mean(0)),
        "median": (plain, np.median(fold_scores, 0)),
        "centred": (oof_of(centred), _scans(test, {k: np.mean([centred(f, test_p[f][k]) for f in folds], 0)
                                                   for k in test_p[0]}, "test", {}).arrays()[1]),
    }
    print(f"fold models' mean score on the normal test scans: {[round(float(s[y == 0].mean()), 2) for s in fold_scores]}")
    print(f"centring (median, sd of normal train-val gland logits): {[(round(m, 2), round(d, 2)) for m, d in centre]}")
    print(f"\n{'combination':<14}{'OOF AUC':>8}{'test AUC':>9}   " + "   ".join(f"{o} (value: sens/spec)" for o in OBJECTIVES))
    for name, (oof, s) in combos.items():
        oy, os_, _ = OV.scan_scores(oof, "sides").arrays()
        cells = []
        for obj in OBJECTIVES:
            v = OV.choose_operating_value(oof, obj, "sides").operating_value
            m = M.metrics_from_confusion(*M.confusion(y, s, v))
            cells.append(f"{v:.3f}: {m['sensitivity']:.2f}/{m['specificity']:.2f}")
        print(f"{name:<14}{M.auc(oy, os_):8.3f}{M.auc(y, s):9.3f}   " + "   ".join(f"{c:<28}" for c in cells))
    for obj in OBJECTIVES:
        v = OV.choose_operating_value(plain, obj, "sides").operating_value
        votes = (fold_scores >= v).mean(0)
        m = M.metrics_from_confusion(*M.confusion(y, votes, 0.5))
        print(f"vote at {obj} value {v:.3f}: sens/spec {m['sensitivity']:.2f}/{m['specificity']:.2f}, "
              f"AUC of the vote share {M.auc(y, votes):.3f}")


if __name__ == "__main__":
    main()
