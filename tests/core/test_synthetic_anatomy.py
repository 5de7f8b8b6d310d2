"""Synthetic anatomy: tissue HU per phase, adrenal placement, lesions on their glands, truth boxes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from inference.ml.geometry import voxel_to_lps
from synthetic import make_patient
from synthetic.anatomy import draw
from synthetic.lesions import draw_lesion
from synthetic.tissues import LABEL_OF, LESION_TYPES, PHASES, RANGES

TISSUES = ["muscle", "subcutaneous_fat", "visceral_fat", "liver", "spleen", "kidney_cortex", "kidney_medulla",
           "aorta", "ivc", "portal_vein", "pancreas", "lung", "adrenal"]


def _lps_of(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return voxel_to_lps(affine, np.argwhere(mask)[:, ::-1])


@pytest.mark.parametrize("phase", PHASES)
def test_tissue_hu_within_range_per_phase(phase):
    s = make_patient(3, abnormal=False, coverage="upper_abdomen", slice_spacing_mm=5, matrix=512,
                     pixel_spacing_mm=0.75, phase=phase)
    assert s.volume.array.dtype == np.int16
    for t in TISSUES:
        m = s.labels == LABEL_OF[t]
        if t != "adrenal":  # thin glands: every voxel counts; elsewhere skip partial-volume edges
            m = ndimage.binary_erosion(m, structure=np.ones((1, 5, 5)))
        assert m.sum() > 300, t
        mean = float(s.volume.array[m].mean())
        lo, hi = RANGES[t][phase]
        assert lo <= mean <= hi, f"{t} in {phase}: mean {mean:.1f} HU outside [{lo}, {hi}]"


def test_contrast_phases_differ_where_they_should():
    means = {}
    for phase in PHASES:
        s = make_patient(4, abnormal=False, profile="tiny", phase=phase)
        means[phase] = {t: float(s.volume.array[s.labels == LABEL_OF[t]].mean()) for t in ("aorta", "liver")}
    assert means["arterial"]["aorta"] > means["portal_venous"]["aorta"] > means["non_contrast"]["aorta"] + 60
    assert means["portal_venous"]["liver"] > means["non_contrast"]["liver"] + 30


@pytest.mark.parametrize("seed", range(10))
def test_glands_near_kidney_upper_pole_and_boxes_contain_them(seed):
    s = make_patient(100 + seed, abnormal=seed % 2 == 0, profile="tiny")
    for side in ("R", "L"):
        gland = s.masks[f"gland_{side}"] | s.masks.get(f"lesion_{side}", False)  # the gland with its lesion
        pts = _lps_of(gland, s.volume.affine)
        pole = np.asarray(s.truth.upper_poles[side])
        assert np.linalg.norm(pts - pole, axis=1).min() <= 25.0, side
        box = s.truth.glands[side]
        assert box.contains(pts, tol_mm=1e-3).all()
        les = s.masks.get(f"lesion_{side}")
        if les is not None:
            assert box.contains(_lps_of(les, s.volume.affine), tol_mm=1e-3).all()
    # the right gland lies posterior to the IVC, the left lateral to the aorta
    ivc = _lps_of(s.labels == LABEL_OF["ivc"], s.volume.affine)
    aorta = _lps_of(s.labels == LABEL_OF["aorta"], s.volume.affine)
    r, lft = s.truth.glands["R"].centre, s.truth.glands["L"].centre
    near_ivc = ivc[np.abs(ivc[:, 2] - r[2]) < 10]
    assert r[1] > near_ivc[:, 1].mean()
    near_ao = aorta[np.abs(aorta[:, 2] - lft[2]) < 10]
    assert lft[0] > near_ao[:, 0].max()
    assert s.truth.glands["R"].centre[0] < 0 < s.truth.glands["L"].centre[0]  # LPS: right is -x


@pytest.mark.parametrize("seed", range(8))
def test_every_lesion_is_contiguous_with_its_gland_and_boxed(seed):
    s = make_patient(200 + seed, abnormal=True, profile="tiny")
    assert s.label == "abnormal" and s.truth.lesions
    for les in s.truth.lesions:
        lm = s.masks[f"lesion_{les.side}"]
        gm = s.masks[f"gland_{les.side}"]
        touching = ndimage.binary_dilation(lm, structure=np.ones((3, 3, 3))) & gm
        assert touching.any(), f"lesion {les} not contiguous with its gland"
        assert les.box.contains(_lps_of(lm, s.volume.affine), tol_mm=1e-3).all()
        lo, hi = LESION_TYPES[les.type]
        assert lo <= les.mean_hu <= hi


def test_lesion_mean_hu_is_what_the_truth_says():
    for seed in range(5):
        s = make_patient(300 + seed, abnormal=True, profile="tiny", keep_noiseless=True)
        for les in s.truth.lesions:
            m = s.masks[f"lesion_{les.side}"]
            if les.type == "cyst":
                continue  # its mean is that of the contents, inside the rim
            assert abs(float(s.noiseless[m].mean()) - les.mean_hu) < 1.0


def test_lesion_sizes_and_types_are_varied_small_ones_common():
    rng = np.random.default_rng(0)
    gland = draw(np.random.default_rng(1)).glands["L"]
    specs = [draw_lesion(rng, gland) for _ in range(400)]
    d = np.array([2 * s.semi.max() for s in specs])
    assert d.min() >= 8 - 1e-6 and d.max() <= 45 + 1e-6
    assert 0.25 <= np.mean(d <= 12) <= 0.6
    assert {s.type for s in specs} == set(LESION_TYPES)
    bilateral = [make_patient(s, abnormal=True, profile="tiny").truth.lesions for s in range(400, 440)]
    assert any(len(x) == 2 for x in bilateral) and sum(len(x) == 1 for x in bilateral) > 25


def test_normal_and_abnormal_differ_only_at_the_lesion():
    n = make_patient(55, abnormal=False, profile="tiny")
    a = make_patient(55, abnormal=True, profile="tiny")
    lesion = np.zeros(n.volume.shape, bool)
    for k, m in a.masks.items():
        if k.startswith("lesion_"):
            lesion |= m
    near = ndimage.binary_dilation(lesion, structure=np.ones((3, 3, 3)), iterations=2)
    diff = n.volume.array != a.volume.array
    assert diff.any() and not (diff & ~near).any()
    assert np.array_equal(n.volume.affine, a.volume.affine)


def test_coverages_show_or_miss_the_glands():
    chest = make_patient(9, abnormal=True, profile="tiny", coverage="chest_only")
    pelvis = make_patient(9, abnormal=True, profile="tiny", coverage="pelvis_only")
    abdo = make_patient(9, abnormal=True, profile="tiny", coverage="abdomen")
    assert chest.truth.glands == {"R": None, "L": None} and pelvis.truth.glands == {"R": None, "L": None}
    assert all(abdo.truth.glands.values())
    assert abdo.volume.shape[0] > make_patient(9, abnormal=True, profile="tiny").volume.shape[0]


def test_acquisition_parameters_follow_the_default_profile():
    for seed in range(12):
        a = make_patient.__globals__["draw_acquisition"](np.random.default_rng(seed), "default")
        assert a.matrix == 512 and 0.6 <= a.pixel_mm <= 0.95 and 1.0 <= a.slice_mm <= 5.0
        assert 8 <= a.noise_hu <= 25
    with pytest.raises(ValueError, match="unknown coverage 'legs'"):
        make_patient(1, abnormal=False, coverage="legs")
    with pytest.raises(ValueError, match="unknown profile"):
        make_patient(1, abnormal=False, profile="huge")
