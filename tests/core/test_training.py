"""Training core: splits, out-of-fold bookkeeping, best-validation weights, identical initial weights,
determinism and resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.ml.presets import preset_config
from inference.ml.splits import make_split
from inference.ml.training import FoldData, fresh_model, load_ensemble, train_fold


def test_split_is_patient_disjoint_stratified_and_seeded():
    labels = {f"P{i:03d}": int(i % 3 == 0) for i in range(53)}
    s = make_split(labels, seed=4)
    assert s == make_split(labels, seed=4) and s != make_split(labels, seed=5)
    test = set(s.test_patients)
    assert not test & set(s.trainval())
    assert sorted(test | set(s.trainval())) == sorted(labels)
    assert abs(len(test) - 0.2 * 53) <= 2
    for k in range(5):
        train, val = s.fold_sets(k)
        assert not set(train) & set(val) and not (set(train) | set(val)) & test
        assert sorted(train + val) == sorted(s.trainval())
    # every patient validates in exactly one fold; positives spread over folds
    assert sorted(p for f in s.folds for p in f) == sorted(s.trainval())
    assert all(sum(labels[p] for p in f) >= 1 for f in s.folds)
    with pytest.raises(ValueError, match="too few patients"):
        make_split({"A": 0, "B": 1}, n_folds=5)


def _data(seed: int, n: int = 48):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 3, 16, 32)) * 0.3).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 1, :, 4:10, 4:10] = 1.0
    return x, y


def _fold_data():
    return FoldData(*_data(0), *_data(1, 24))


def test_best_validation_weights_are_used(tmp_path):
    cfg = preset_config("tiny", {"epochs": 4, "lr": 0.05})  # a large lr makes later epochs worse sometimes
    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    r = train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / "f0")
    hist = r["history"]
    best = min(hist, key=lambda h: h["val_loss"])
    assert r["best_epoch"] == best["epoch"]
    saved = torch.load(tmp_path / "f0" / "best.pt", weights_only=True)
    for k, v in r["model"].state_dict().items():
        assert torch.equal(v.cpu(), saved[k])
    # the returned model's validation loss is the best epoch's, not the last one's
    from inference.ml.training import class_weights, evaluate
    d = _fold_data()
    loss, _, _ = evaluate(r["model"], torch.as_tensor(d.val_x), torch.as_tensor(d.val_y, dtype=torch.float32),
                          class_weights(d.train_y), 64, "cpu")
    assert loss == pytest.approx(best["val_loss"], abs=1e-4)


def test_folds_start_from_identical_fresh_weights_and_are_deterministic(tmp_path):
    cfg = preset_config("tiny")
    a, _ = fresh_model(cfg)
    b, _ = fresh_model(cfg)
    c, _ = fresh_model(cfg, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    torch.save(a.state_dict(), tmp_path / "init.pt")
    init = {k: v.clone() for k, v in a.state_dict().items()}
    r1 = train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / "f0", fold=0)
    r2 = train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / "again0", fold=0)
    assert r1["history"] == r2["history"]  # deterministic on CPU
    # training fold 0 did not touch the initial weights fold 1 starts from
    assert all(torch.equal(v, init[k]) for k, v in torch.load(tmp_path / "init.pt", weights_only=True).items())


def test_resume_from_last_epoch_matches_uninterrupted(tmp_path):
    cfg = preset_config("tiny", {"epochs": 3})
    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    full = train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / "full")

    class Stop(Exception):
        pass

    def stop_after_two(entry, history):
        if entry["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / "cut", on_epoch=stop_after_two)
    resumed = train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / "cut")
    assert resumed["resumed_from"] == 2
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert [h["val_loss"] for h in resumed["history"]] == pytest.approx([h["val_loss"] for h in full["history"]],
                                                                        abs=1e-5)


def test_ensemble_predicts_one_column_per_fold_and_learns(tmp_path):
    cfg = preset_config("tiny", {"epochs": 4})
    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    for k in range(2):
        train_fold(cfg, tmp_path / "init.pt", _fold_data(), tmp_path / f"fold{k}", fold=k)
    ens = load_ensemble([tmp_path / f"fold{k}" / "best.pt" for k in range(2)], cfg)
    x, y = _data(7, 20)
    p = ens.predict(x)
    assert p.shape == (20, 2) and ((p >= 0) & (p <= 1)).all()
    assert p[y == 1].mean() > p[y == 0].mean()
    # images at the stored resolution are resized to the model's input
    big = torch.nn.functional.interpolate(torch.as_tensor(x), size=(32, 64)).numpy()
    assert ens.predict(big).shape == (20, 2)


def test_augmentation_switches_and_seed():
    from inference.ml.augment import augment_batch

    x = torch.rand(6, 3, 16, 32)
    off = {"rotation_deg": 0, "zoom": 0, "contrast": 0, "dropout_holes": 0, "invert_p": 0}
    assert torch.equal(augment_batch(x, off, torch.Generator().manual_seed(0)), x)
    cfg = preset_config("paper")["augment"]
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.shape == x.shape
    inv = augment_batch(x, off | {"invert_p": 1.0}, torch.Generator().manual_seed(0))
    assert torch.allclose(inv, 1 - x)
