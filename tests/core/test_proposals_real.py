"""Proposals on the real TotalSegmentator CTs: every adrenal-mask voxel inside the boxes, no side over 70 mm, on
the files as stored and after flips, axis permutations, shifts and resampling; a pelvis-only field of view flagged;
boxes from user-supplied masks.

Leakage. ``propose`` matches atlases: two real ones (tsx-example-ct, made from example_ct with its masks, and
tsx-example-ct-dicom, made from the DICOM series with its right adrenal: a 40 mm slab, one gland) and four
synthetic. On a real scan with every atlas in, its own patient's atlas takes part, so those are checks of geometry
(any storage order, spacing and table position must give the same anatomy in mm), not of anatomy the atlases never
saw. The leave-one-out checks leave that patient's atlas out by its source name: example_ct and example_ct_sm are
then boxed by the DICOM patient's atlas (right gland) and the synthetic ones (left gland), the DICOM series by the
example CT's atlas; ``test_dicom_patient_is_its_atlas_patient_and_excluding_its_source_leaves_none`` checks by
image similarity that what remains holds no atlas of the DICOM patient. Known limit (README, 'Crop-box
proposals'): the left gland of the example CT has no real atlas once its own is left out (the DICOM patient's mask
has no left adrenal), so example_ct's left side is "not located" and example_ct_sm's left box, from the synthetic
atlases, misses part of the gland (``test_example_ct_sm_leave_one_out_left_gland``, an expected failure)."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ml.geometry import voxel_to_lps
from inference.ml.proposals import MARGIN_MM, MAX_SIDE_MM, find_mask_files, propose, propose_from_masks
from inference.ml.volume import Volume, load_nifti
from tests.plugins.proposals import flipped, moved, permuted, resample

SIDES = {"R": 8, "L": 9}
MAX_VOLUME_ML = MAX_SIDE_MM ** 3 / 1000


def gland_points(seg: Volume, side: str) -> np.ndarray:
    return voxel_to_lps(seg.affine, np.argwhere(seg.array == SIDES[side])[:, ::-1])


def assert_covers(proposal, seg: Volume, sides=SIDES, min_voxels: int = 100) -> None:
    assert proposal.status == "proposed", proposal.reason
    for side in sides:
        pts = gland_points(seg, side)
        assert len(pts) > min_voxels
        inside = proposal.boxes[side].contains(pts)
        assert inside.all(), f"{side}: {np.count_nonzero(~inside)} of {len(pts)} gland voxels outside"
        size = proposal.boxes[side].size_mm
        assert np.all(size <= MAX_SIDE_MM + 1e-6) and np.prod(size) / 1000 <= MAX_VOLUME_ML + 1e-6, size
        sp = proposal.sides[side]
        assert sp.status == "proposed" and sp.method == "atlas" and 0 < sp.confidence <= 1


@pytest.fixture(scope="module")
def dicom_scan(realct):
    """The real 20-slice DICOM series (another patient than example_ct) and its multilabel mask."""
    from inference.ml.dicom import load_folder

    volume = load_folder(realct["example_ct_dicom"])
    return volume, load_nifti(realct["seg_dir"] / "example_seg_dicom.nii.gz", dtype=np.uint8)


def test_dicom_slab_below_the_lungs(dicom_scan):
    """40 mm through the top of the right adrenal, no lung bases and no kidneys: the right gland is boxed (the
    old proposer answered "no lungs in the field of view")."""
    volume, seg = dicom_scan
    result = propose(volume)
    assert_covers(result, seg, sides={"R": 8}, min_voxels=500)
    for sp in result.sides.values():
        assert sp.status == "not_covered" or np.all(sp.box.size_mm <= MAX_SIDE_MM + 1e-6)


COPIES = {
    "flip k and i": lambda v: flipped(v, (0, 2)),
    "flip j": lambda v: flipped(v, (1,)),
    "permute to i, k, j": lambda v: permuted(v, (2, 0, 1)),
    "permute to j, i, k": lambda v: permuted(v, (1, 2, 0)),
    "moved on the table": lambda v: moved(v, (23.0, -17.0, -311.0)),
}


@pytest.mark.parametrize("copy", sorted(COPIES))
@pytest.mark.parametrize("name", ["example_ct", "example_ct_sm", "dicom"])
def test_flipped_permuted_and_moved_copies(real_scans, dicom_scan, name, copy):
    """The same files stored otherwise (and the masks with them): the same glands inside."""
    volume, seg = dicom_scan if name == "dicom" else real_scans[name]
    make = COPIES[copy]
    result = propose(make(volume))
    seg_copy = make(seg)
    if name == "dicom":
        assert_covers(result, seg_copy, sides={"R": 8}, min_voxels=500)
    else:
        assert_covers(result, seg_copy)


@pytest.mark.parametrize("name", ["example_ct", "example_ct_sm"])
def test_real_ct_glands_inside_boxes(real_scans, name):
    volume, seg = real_scans[name]
    assert_covers(propose(volume), seg)


@pytest.mark.parametrize("spacing, shift", [((1.5, 1.5, 5.0), (7.0, -11.0, 13.0)), ((0.8, 0.8, 2.0), (-20.0, 15.0, 6.0))])
def test_resampled_and_shifted_copies(real_scans, spacing, shift):
    """Another grid (thin and thick slices, other origin): the anatomy, hence the masks, stay put in mm."""
    volume, seg = real_scans["example_ct"]
    assert_covers(propose(resample(volume, spacing, shift)), seg)


def crop_z(volume: Volume, k0: int, k1: int) -> Volume:
    shift = np.eye(4)
    shift[2, 3] = k0
    return Volume(volume.array[k0:k1], volume.affine @ shift)


def test_pelvis_only_is_not_covered(real_scans):
    volume, _ = real_scans["example_ct"]
    result = propose(crop_z(volume, 0, 40))  # 94..211 mm: below the kidneys
    assert result.status == "not_covered" and not result.boxes, result.to_dict()
    assert result.reason.startswith("adrenal region not") and "pelvis or head only?" in result.reason, result.reason


def test_boxes_from_per_class_masks(realct, real_scans):
    _, seg = real_scans["example_ct_sm"]
    found = find_mask_files(realct["seg_fast"])
    assert isinstance(found, dict)
    result = propose_from_masks(found)
    assert result.method == "mask"
    for side in SIDES:
        pts = gland_points(seg, side)
        box = result.boxes[side]
        assert box.contains(pts).all()
        tight = pts.max(axis=0) - pts.min(axis=0)
        # tight around the voxel cells (3 mm) plus the margin on both faces, nothing more
        np.testing.assert_allclose(box.size_mm, tight + 3.0 + 2 * MARGIN_MM, atol=1e-3)


def test_boxes_from_multilabel_mask_match_per_class(realct):
    multi = propose_from_masks(realct["seg_dir"] / "example_seg_fast.nii.gz")
    per_class = propose_from_masks(find_mask_files(realct["seg_fast"]))
    for side in SIDES:
        np.testing.assert_allclose(multi.boxes[side].lps_min, per_class.boxes[side].lps_min)
        np.testing.assert_allclose(multi.boxes[side].lps_max, per_class.boxes[side].lps_max)


def test_mask_of_one_gland_boxes_that_side_and_notes_the_other(tmp_path, real_scans):
    from inference.ml.volume import save_nifti

    _, seg = real_scans["example_ct_sm"]
    one = tmp_path / "one.nii.gz"
    save_nifti(Volume(np.where(seg.array == 9, 0, seg.array).astype(np.int16), seg.affine), one)
    result = propose_from_masks(one)
    assert result.status == "proposed" and set(result.boxes) == {"R"}
    assert result.sides["R"].method == "mask" and result.sides["R"].confidence == 1.0
    assert result.sides["L"].status == "not_covered" and "no left adrenal voxels" in result.sides["L"].note
    none = tmp_path / "none.nii.gz"
    save_nifti(Volume(np.zeros_like(seg.array, dtype=np.int16), seg.affine), none)
    result = propose_from_masks(none)
    assert result.status == "not_covered" and "no right adrenal voxels" in result.reason
    assert "no left adrenal voxels" in result.reason


def test_storage_order_does_not_matter(real_scans):
    """Slices stored head first and columns stored right-to-left: same anatomy in mm, same boxes."""
    volume, seg = real_scans["example_ct"]
    k, _, i = volume.shape
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[0, 3], flip[2, 3] = i - 1, k - 1  # new (i, j, k) -> old (i_max - i, j, k_max - k)
    flipped = Volume(np.ascontiguousarray(volume.array[::-1, :, ::-1]), volume.affine @ flip)
    a, b = propose(volume), propose(flipped)
    for side in SIDES:
        np.testing.assert_allclose(a.boxes[side].lps_min, b.boxes[side].lps_min, atol=3.01)
        np.testing.assert_allclose(a.boxes[side].lps_max, b.boxes[side].lps_max, atol=3.01)
    assert_covers(b, seg)


def test_empty_scan_is_not_covered():
    empty = Volume(np.full((20, 32, 32), -1024, np.int16), np.diag([2.0, 2.0, 5.0, 1.0]))
    result = propose(empty)
    assert result.status == "not_covered" and "no body" in result.reason


def test_a_scan_not_in_hounsfield_units_is_not_covered_for_that_reason(realct):
    """The real CT stored without its rescale (air at 0, as a series missing RescaleIntercept is): the proposer
    says the values are not Hounsfield units instead of blaming the field of view ("no lungs ... pelvis only?")."""
    ct = load_nifti(realct["example_ct_sm"])
    raw = Volume((ct.array.astype(np.int32) + 1024).clip(0, 32767).astype(np.int16), ct.affine)
    result = propose(raw)
    assert result.status == "not_covered" and "not Hounsfield units" in result.reason, result.reason
    assert "no air in Hounsfield units (values from 0 to" in result.reason


# --- leave-one-out ----------------------------------------------------------------------------------------------

DICOM_SOURCE = "totalsegmentator:example_ct_dicom"
SAME_PATIENT_NCC = 0.7  # measured: example_ct resampled to 0.78x0.78x1.5 mm and moved, against its atlas: 0.93;
# the DICOM slab against its own atlas 0.95, against the example CT's 0.52, against the synthetic atlases 0.46-0.48


def best_match_anywhere(volume: Volume, atlas) -> float:
    """Masked NCC (fat/soft-tissue window, 6 mm blocks) of the whole scan placed anywhere on the atlas scan."""
    from inference.ml.proposals.canonical import canonical
    from inference.ml.proposals.localise import _shrink, _window
    from inference.ml.proposals.ncc import masked_ncc, peak

    c = canonical(volume)
    t, tm = _window(c.hu), c.valid & (c.hu > -400)
    f, fm = _window(atlas.scan.hu), atlas.scan.valid
    t, tm, f, fm = _shrink(t, tm, 2), _shrink(tm, tm, 2) > 0.5, _shrink(f, fm, 2), _shrink(fm, fm, 2) > 0.5
    pad = [(n, n) for n in t.shape]
    return float(peak(masked_ncc(np.pad(f, pad, constant_values=-120.0), np.pad(fm, pad), t, tm, min_overlap=0.5))[1])


def test_dicom_patient_is_its_atlas_patient_and_excluding_its_source_leaves_none(dicom_scan):
    """The DICOM series' patient matches the atlas made from it as a patient matches his own atlas, and no other
    real atlas so well: leaving out ``DICOM_SOURCE`` leaves no atlas of that patient (the leave-one-out tests below
    are fair)."""
    from inference.ml.proposals.atlas import shipped_atlases

    volume, _ = dicom_scan
    real = {a.source: a for a in shipped_atlases() if a.real}
    assert DICOM_SOURCE in real and "totalsegmentator:example_ct" in real
    assert best_match_anywhere(volume, real[DICOM_SOURCE]) >= SAME_PATIENT_NCC
    rest = shipped_atlases(exclude_sources=(DICOM_SOURCE,))
    assert DICOM_SOURCE not in {a.source for a in rest} and len(rest) == len(shipped_atlases()) - 1
    for atlas in rest:
        if atlas.real:
            assert best_match_anywhere(volume, atlas) < SAME_PATIENT_NCC, atlas.name


def test_dicom_atlas_shows_one_gland_cut_by_its_slab():
    """The DICOM patient's atlas holds the right gland only (its mask has no left adrenal), and the slab's first
    slice cuts that gland: its estimates claim the gland down to ``FULL_GLAND_MM``, not the seen top alone."""
    from inference.ml.proposals.atlas import FULL_GLAND_MM, shipped_atlases

    atlas = next(a for a in shipped_atlases() if a.source == DICOM_SOURCE)
    assert atlas.sides == ("R",) and atlas.points["L"].shape == (0, 3)
    with pytest.raises(ValueError):
        atlas.gland_box("L")
    assert atlas.cut("R") == (True, False)
    lo, hi = atlas.gland_box("R")
    elo, ehi = atlas.gland_extent("R")
    assert ehi[2] == hi[2] and ehi[2] - elo[2] == pytest.approx(FULL_GLAND_MM)
    np.testing.assert_array_equal(elo[:2], lo[:2])
    for other in shipped_atlases(exclude_sources=(DICOM_SOURCE,)):  # whole glands: boxes unchanged
        for side in other.sides:
            assert other.cut(side) == (False, False), (other.name, side)


def test_an_atlas_of_one_gland_votes_for_that_side_only(dicom_scan):
    """With the DICOM patient's atlas alone, its scan gets the right box and the left side no vote ("not
    located"), not an error."""
    from inference.ml.proposals import propose_from_atlases
    from inference.ml.proposals.atlas import shipped_atlases

    volume, seg = dicom_scan
    atlas = next(a for a in shipped_atlases() if a.source == DICOM_SOURCE)
    result = propose_from_atlases(volume, atlases=[atlas])
    assert_covers(result, seg, sides={"R": 8}, min_voxels=500)
    assert result.sides["L"].status == "not_covered" and "no atlas level matches" in result.sides["L"].note


LOO_COPIES = ("as stored", "flip k and i", "permute to i, k, j")


@pytest.mark.parametrize("copy", LOO_COPIES)
def test_leave_one_out_real_ct(dicom_scan, copy):
    """A real CT no atlas was made from (its patient's atlases, if any, left out): every voxel of its right
    adrenal inside a box of at most 70 mm a side, as stored, flipped and permuted."""
    volume, seg = dicom_scan
    make = COPIES.get(copy, lambda v: v)
    result = propose(make(volume), exclude_sources=(DICOM_SOURCE,))
    assert_covers(result, make(seg), sides={"R": 8}, min_voxels=500)


def test_leave_one_out_by_source_is_the_pool_without_that_atlas(dicom_scan):
    """Excluding the DICOM patient's source gives exactly the boxes of the other atlases (nothing of that patient
    is used), and they hold its right adrenal as they did before its atlas was added."""
    from inference.ml.proposals import propose_from_atlases
    from inference.ml.proposals.atlas import shipped_atlases

    volume, seg = dicom_scan
    by_name = propose(volume, exclude_sources=(DICOM_SOURCE,))
    explicit = propose_from_atlases(volume, atlases=[a for a in shipped_atlases() if a.source != DICOM_SOURCE])
    assert by_name.to_dict() == explicit.to_dict()
    assert_covers(by_name, seg, sides={"R": 8}, min_voxels=500)


@pytest.mark.parametrize("name", ["example_ct", "example_ct_sm"])
def test_example_ct_leave_one_out_right_gland(real_scans, name):
    """With its own atlas left out, the example CT's right adrenal is boxed by the other real patient's atlas (the
    DICOM slab): every voxel inside a box of at most 70 mm a side."""
    volume, seg = real_scans[name]
    result = propose(volume, exclude_sources=("totalsegmentator:example_ct",))
    assert_covers(result, seg, sides={"R": 8})


def test_example_ct_leave_one_out_left_gland_is_turned_away_with_its_reason(real_scans):
    """No real atlas left shows a left gland, and the synthetic atlases' levels do not match this real abdomen:
    the left side is turned away with a reason naming what failed, never given a box somewhere else."""
    volume, _ = real_scans["example_ct"]
    result = propose(volume, exclude_sources=("totalsegmentator:example_ct",))
    assert result.sides["L"].status == "not_covered" and "L" not in result.boxes
    assert "no atlas level matches" in result.sides["L"].note


@pytest.mark.xfail(strict=True, reason="left gland boxed by the synthetic atlases only (no real atlas shows a left "
                   "gland once example_ct's is left out): 63% of its voxels inside (README, 'Crop-box proposals')")
def test_example_ct_sm_leave_one_out_left_gland(real_scans):
    volume, seg = real_scans["example_ct_sm"]
    result = propose(volume, exclude_sources=("totalsegmentator:example_ct",))
    assert_covers(result, seg, sides={"L": 9})
