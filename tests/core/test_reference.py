"""The normal reference of the lesion detector (inference.ml.reference, LesionNet's reference channel)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.ml import networks
from inference.ml import reference as R
from inference.ml import supervision as S
from inference.ml.ensemble import load_ensemble
from inference.ml.images25d import SideImages
from inference.ml.mil import train_fold_mil
from inference.ml.presets import ConfigError, preset_config
from inference.ml.training import fresh_model


def test_the_coreset_keeps_a_rare_normal_structure():
    """Greedy k-centre keeps a representative of a structure a few normal cells show (random sampling of 20 of
    1003 would mostly miss it, and the structure would then read as far from every normal cell)."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(np.concatenate([rng.normal(0, 1, (1000, 8)), rng.normal(12, 0.1, (3, 8))]), dtype=torch.float32)
    keep = R.coreset(x, 20, seed=1)
    assert len(set(keep.tolist())) == 20 and (keep >= 1000).any()
    assert torch.equal(R.coreset(x[:5], 20), torch.arange(5))


def test_distances_leave_the_own_patient_out():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert R.nearest_distance(q, bank).tolist() == [0.0, 0.0]
    d = R.nearest_distance(q, bank, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert d.tolist() == pytest.approx([5.0, 5.0])
    alone = R.nearest_distance(q[:1], bank[:1], torch.tensor([0]), torch.tensor([0]))
    assert torch.isinf(alone).all()
    assert torch.isinf(R.nearest_distance(q, bank[:0])).all()


def test_the_bank_and_its_scale():
    """The scale is the normal cells' median distance with their own patient left out, so a normal cell's
    channel reads about 1."""
    maps = torch.zeros(3, 4, 2, 2)
    maps[:, 0] = torch.arange(4.0).reshape(2, 2)
    with pytest.raises(ValueError, match="normal glands"):
        R.build(maps[:0], torch.zeros(0, dtype=torch.long), 16)
    maps[:, 1] = torch.tensor([0.0, 1.0, 2.0])[:, None, None]  # patient p's cells one step from p +- 1's
    groups = torch.tensor([0, 1, 2])
    bank, bank_groups = R.build(maps, groups, 64)
    assert bank.shape == (12, 4) and bank_groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    own = R.distances(maps, bank, groups, bank_groups)
    assert own.shape == (3, 1, 2, 2) and R.normal_scale(own) == pytest.approx(1.0)
    assert (R.distances(maps, bank) == 0).all()  # unseen patients' identical cells: distance 0
    assert (R.distances(maps + 10.0, bank) > 7).all()
    alone = R.distances(maps[:1], bank[:4], groups[:1], bank_groups[:4])  # its patient is the whole bank
    assert torch.isfinite(alone).all() and R.normal_scale(torch.zeros(0)) == 1.0


def test_the_coreset_chooses_from_a_sample_of_a_huge_bank(monkeypatch):
    """Hundreds of patients' normal cells: the coreset chooses from a seeded sample of MAX_CANDIDATES of them,
    whose passes stay linear in that, not in all the cells."""
    monkeypatch.setattr(R, "MAX_CANDIDATES", 50)
    maps = torch.rand(10, 4, 3, 3)
    bank, groups = R.build(maps, torch.arange(10), 20, seed=3)
    again, _ = R.build(maps, torch.arange(10), 20, seed=3)
    assert bank.shape == (20, 4) and torch.equal(bank, again) and groups.max() <= 9


def _scan(rng, k, abnormal_side=None, n=6, size=32):
    sides = {}
    for s in ("R", "L"):
        x = (0.35 + rng.random((n, 3, size, size)) * 0.1).astype(np.float32)
        if s == abnormal_side:
            x[int(rng.integers(0, n)), :, 10:20, 10:20] = 0.95
        sides[s] = SideImages(s, x, np.arange(n) * 6.0, (0.0, 0.0), 1.0, 3.0)
    return S.ScanSample.from_images(f"scan{k}", f"P{k}", int(abnormal_side is not None), sides,
                                    sides=abnormal_side or "none")


def _cohort(seed, n):
    rng = np.random.default_rng(seed)
    return [_scan(rng, seed * 100 + k, ("R", "L")[k % 2] if k % 3 else None) for k in range(n)]


def test_a_fold_with_the_normal_reference(tmp_path, monkeypatch):
    """`fast` with head.reference_cells: the detector's body stays, its head gains the reference channel
    (starting at REFERENCE_WEIGHT), the bank comes from the training scans' normal glands and is kept in the
    fold's weights; the fold loads from its file, ONNX agrees with torch, and a batch is cut so the distances stay
    within REFERENCE_FLOATS (eager and in the ensemble) with the same answers."""
    cfg = preset_config("fast", {"epochs": 2, "input_side_px": 32, "batch_size": 32,
                                 "head": {"reference_cells": 64}, "mil": {"top_k": 1, "steps_per_epoch": 4}})
    model, _ = fresh_model(cfg)
    assert model.fc.weight.shape[1] == 73 and float(model.fc.weight[0, -1].detach()) == networks.REFERENCE_WEIGHT
    assert len(model.reference) == 0  # no bank before training: the channel reads 0
    torch.save(model.state_dict(), tmp_path / "init.pt")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    r = train_fold_mil(cfg, tmp_path / "init.pt", _cohort(31, 18), _cohort(32, 6), tmp_path / "f0")
    trained = r["model"]
    after = trained.state_dict()
    changed = {k for k in init if init[k].shape != after[k].shape or not torch.equal(init[k], after[k])}
    assert changed and changed <= {"fc.weight", "fc.bias", "reference", "reference_mean", "reference_scale"}, changed
    assert trained.reference.shape == (64, 72) and float(trained.reference_scale) > 0
    path = tmp_path / "f0" / "best.pt"
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved["reference"], trained.reference) and saved["reference_mean"].shape == (72,)
    x = np.concatenate([b.images for sc in _cohort(33, 3) for b in sc.bags.values()]).astype(np.float32)
    p1, m1 = load_ensemble([path], cfg, device="cpu", runtime="torch").predict_maps(x)
    p2, m2 = load_ensemble([path], cfg, device="cpu", runtime="onnx").predict_maps(x)
    assert np.allclose(p1, p2, atol=1e-4) and np.allclose(m1, m2, atol=1e-3)
    monkeypatch.setattr(networks, "REFERENCE_FLOATS", 16 * 64 * 2)  # two images of 16 cells per call
    small = load_ensemble([path], cfg, device="cpu", runtime="onnx")
    assert small.batch_size == 2
    p3, _ = small.predict_maps(x)
    with torch.no_grad():
        f = trained.features(torch.as_tensor(x))
    assert np.allclose(p3, p1, atol=1e-4) and f.shape == (len(x), 73, 4, 4)


def test_the_reference_needs_the_frozen_map_of_lesion_net():
    with pytest.raises(ConfigError, match="head.reference_cells.*tune_last 0"):
        preset_config("fast", {"head": {"reference_cells": 64, "tune_last": 1}})
    with pytest.raises(ConfigError, match="head.reference_cells.*only lesion_net"):
        preset_config("lite", {"head": {"reference_cells": 64}})
    with pytest.raises(ConfigError, match="head.reference_cells"):
        preset_config("fast", {"head": {"reference_cells": 100000}})


def test_the_fast_presets_reference_gives_way_to_overrides_it_cannot_go_with():
    """`fast` keeps a normal reference by default; `--set freeze=none`, `head.tune_last=1` or another backbone
    alone drop it (they worked before it existed), while asking for both is refused."""
    assert preset_config("fast")["head"] == {"reference_cells": 8192}
    assert "head" not in preset_config("fast", {"freeze": "none"})
    assert preset_config("fast", {"head.tune_last": 1})["head"] == {"tune_last": 1}
    assert "head" not in preset_config("fast", {"backbone": "tiny_cnn", "input_side_px": 32})
    assert preset_config("fast", {"head.reference_cells": 0})["head"] == {"reference_cells": 0}
    with pytest.raises(ConfigError, match="^head.reference_cells: .*freeze 'backbone'"):
        preset_config("fast", {"freeze": "none", "head.reference_cells": 64})
