"""Dense pretraining of the lesion detector: per-cell targets from lesion pixels, and a detector that learns a
lesion from them (toy images: a soft-tissue disc in fat, the kind of contrast an adrenal lesion has)."""
from __future__ import annotations

import numpy as np
import torch

from inference.ml.metrics import auc
from inference.ml.networks import LesionNet
from inference.ml.pretraining import cell_targets, train_dense


def test_cell_targets_mark_lesion_cells_and_leave_boundary_cells_out():
    m = torch.zeros(1, 16, 16, dtype=torch.bool)
    m[0, 0:8, 0:8] = True          # a whole cell
    m[0, 8:9, 8:9] = True          # one pixel of a cell: neither lesion nor clearly not
    target, weight = cell_targets(m)
    assert target.shape == (1, 2, 2)
    assert target[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert weight[0].tolist() == [[1.0, 1.0], [1.0, 0.0]]


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 48 px images of fat (-100 HU) with noise; half hold a 10-16 px disc of 30 HU (a lesion)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    x = np.full((n, 3, 48, 48), (-100 + 200) / 600, np.float32) + rng.normal(0, 0.02, (n, 3, 48, 48)).astype(np.float32)
    m = np.zeros((n, 48, 48), bool)
    for i in range(0, n, 2):
        cy, cx, r = rng.integers(12, 36), rng.integers(12, 36), rng.integers(5, 8)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        x[i][:, disc] = (30 + 200) / 600
        m[i] = disc
    return torch.from_numpy(x), torch.from_numpy(m)


def test_train_dense_learns_a_lesion_from_its_pixels():
    torch.manual_seed(0)
    model = LesionNet(width=8)
    x, m = _toy(160, 1)
    history = train_dense(model, x, m, epochs=6, batch=16, seed=0)
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
    tx, tm = _toy(40, 2)
    with torch.no_grad():
        score = model(tx).reshape(-1).numpy()
    assert auc(tm.flatten(1).any(1).numpy().astype(int), score) > 0.9


def test_dense_patient_masks_line_up_with_the_lesion():
    """A generated abnormal patient's lesion pixels lie on the side and the images whose centres are inside the
    lesion's z extent, and the mask's centre sits where the lesion's centre is in the crop."""
    from inference.ml.presets import preset_config
    from synthetic import make_patient
    from synthetic.dense import dense_patient

    image_cfg = preset_config("fast")["image"]
    seed = 4242
    scan = make_patient(seed, abnormal=True, coverage="abdomen", lesion={"side": "L", "diameter_mm": 30.0})
    patient = dense_patient(seed, True, image_cfg, lesion={"side": "L", "diameter_mm": 30.0})
    assert patient is not None and patient.sides["L"].abnormal == 1 and patient.sides["R"].abnormal == 0
    assert not patient.sides["R"].mask.any()
    left = patient.sides["L"]
    lesion = next(les for les in scan.truth.lesions if les.side == "L")
    marked = left.mask.reshape(len(left.mask), -1).any(axis=1)
    assert marked.sum() >= 2
    inside = (left.z_mm >= lesion.box.lps_min[2] - 1.5) & (left.z_mm <= lesion.box.lps_max[2] + 1.5)
    assert not (marked & ~inside).any()
    # a 30 mm lesion at 0.7 mm pixels: its largest cross-section is a disc of about 21 px radius
    assert left.mask.reshape(len(left.mask), -1).sum(axis=1).max() > 0.5 * np.pi * 21 ** 2
