"""Series that hold several passes, odd instances, variable increments and NIfTI axis orders (issue 11), on the
Django-free core: the shared real-world cases (``tests/data/cases/``, copied from ``../shared/cases``) each with its right outcome, and a generated
member of each kind with other values."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from inference.ml.dicom import SeriesError, exclusion_reason, group_series, load_series, read_header, scan_files
from inference.ml.dicom.nifti import read_nifti_entry
from inference.ml.dicom.passes import interleaved_grids
from inference.ml.dicom.spacing import plan_spacing
from inference.ml.geometry import LPS_TO_RAS, lps_to_voxel, voxel_to_lps
from inference.ml.proposals import propose
from inference.ml.volume import Volume, to_canonical
from tests.plugins.store import CASES, body_hu, phantom, shared_cases, write_ct_series

def passes_in(folder: Path, root: Path | None = None):
    return group_series([read_header(p) for p in scan_files(folder)], root or folder)


# -- the shared cases ------------------------------------------------------------------------------------------
MULTI_PASS = json.loads((CASES / "multi_pass_series" / "truth.json").read_text())
EXPECTED_PASSES = {  # patient -> {label: (body HU, slice step mm, slices)}
    "PHASES": {"acq1": (40, 5.0, 12), "acq2": (140, 5.0, 12)},
    "RECONS": {"kernel-B30f": (40, 1.25, 24), "kernel-B70f": (240, 5.0, 6)},
    "SAMEPOS": {"acq1": (40, 5.0, 12), "acq2": (140, 5.0, 12)},
}
TOLD_APART_BY = {"PHASES": "AcquisitionNumber 1/2", "RECONS": "ConvolutionKernel B30f/B70f; SliceThickness 1.25 mm/5 mm",
                 "SAMEPOS": "AcquisitionNumber 1/2"}


@pytest.mark.parametrize("case", MULTI_PASS["series"], ids=lambda c: c["patient"])
def test_shared_multi_pass_series_become_one_uniform_volume_per_pass(case):
    root = CASES / "multi_pass_series"
    groups = passes_in(root / "normal" / case["patient"], root)
    expected = EXPECTED_PASSES[case["patient"]]
    assert {g.pass_label for g in groups} == set(expected)
    for g in groups:
        assert g.parent_key == case["series_uid"] and g.key == f"{case['series_uid']}#{g.pass_label}"
        assert exclusion_reason(g) is None
        loaded = load_series(g)
        hu, step, slices = expected[g.pass_label]
        assert body_hu(loaded.volume) == [hu] * slices  # never alternating between passes
        assert loaded.volume.spacing[2] == pytest.approx(step) and not loaded.resampled
        assert loaded.notes.startswith(f"pass {g.pass_label} (") and f"split by {TOLD_APART_BY[case['patient']]}" in loaded.notes
        # the bright rod lies on the patient's left-posterior side (LPS x > 0, y > 0)
        k, j, i = np.nonzero((loaded.volume.array > -500) & (loaded.volume.array != hu))
        centre = voxel_to_lps(loaded.volume.affine, np.c_[i, j, k]).mean(axis=0)
        assert centre[0] > 0 and centre[1] > 0


def test_shared_multi_pass_keys_are_stable_across_reads_and_file_order(tmp_path):
    root = CASES / "multi_pass_series"
    first = sorted(g.key for g in group_series([read_header(p) for p in sorted(root.rglob("*.dcm"))], root))
    copy = tmp_path / "copy"
    for n, p in enumerate(sorted(root.rglob("*.dcm"), reverse=True)):  # other names, other folders, other order
        (copy / f"d{n % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, copy / f"d{n % 3}" / f"{1000 - n}.dcm")
    again = sorted(g.key for g in group_series([read_header(p) for p in scan_files(copy)], copy))
    assert first == again and len(first) == 6


def test_shared_nifti_axis_orders_give_one_volume_right_hu_and_the_same_boxes():
    shared = shared_cases() / "nifti_axis_order"
    truth = {s["patient"]: s for s in json.loads((shared / "truth.json").read_text())["series"]}
    volumes, boxes = {}, {}
    for name in ("NII_RAS", "NII_LPS", "NII_ZFIRST"):
        entry = read_nifti_entry(shared / truth[name]["nifti"])
        v = entry.volume
        assert v.shape == (112, 101, 122) and np.allclose(np.diag(v.affine)[:3], 3.0)  # axial slices first, LPS+
        probes = truth[name]["probes"]
        assert len(probes) == 300
        for probe in probes:
            i, j, k = np.rint(lps_to_voxel(v.affine, probe["lps"])).astype(int)
            assert v.array[k, j, i] == probe["hu"], (name, probe)
        volumes[name] = v
        proposal = propose(v)
        assert proposal.status == "proposed", (name, proposal.reason)
        boxes[name] = {side: b.to_dict() for side, b in proposal.boxes.items()}
    for name in ("NII_LPS", "NII_ZFIRST"):
        assert np.array_equal(volumes[name].array, volumes["NII_RAS"].array)
        np.testing.assert_allclose(volumes[name].affine, volumes["NII_RAS"].affine, atol=1e-4)
        assert boxes[name] == boxes["NII_RAS"]


def test_shared_two_slice_nifti_is_refused_like_a_short_dicom_series():
    path = CASES / "nifti_axis_order" / "normal" / "NII_ZFIRST2" / "NII_ZFIRST2.nii.gz"
    with pytest.raises(ValueError, match=r"too short for 2.5D images: 2 axial slice\(s\), need at least 3"):
        read_nifti_entry(path)


# -- generated members: several passes -------------------------------------------------------------------------
def write_passes(folder: Path, passes: list[dict], *, uid: str | None = None, n: int = 8, step: float = 6.0,
                 **common) -> str:
    """One series UID, one call per pass; each dict gives ``z0``, ``body`` and the pass's own attributes."""
    uid = uid or generate_uid()
    study, frame = generate_uid(), generate_uid()
    for p, spec in enumerate(passes):
        spec = dict(spec)
        zs = spec.pop("zs", None)
        z0, pass_step, count = spec.pop("z0", 0.0), spec.pop("step", step), spec.pop("n", n)
        if zs is None:
            zs = [z0 + pass_step * k for k in range(count)]
        body = spec.pop("body")
        write_ct_series(folder, z_positions=zs, values=phantom(zs, body), rows=12, cols=12, series_uid=uid,
                        study_uid=study, frame_of_reference=frame, name_prefix=f"P{p}_", seed=p,
                        **{**common, **spec})
    return uid


def check_uniform_passes(groups, expected: dict[str, int], uid: str) -> None:
    assert {g.pass_label: None for g in groups}.keys() == expected.keys()
    for g in groups:
        assert g.parent_key == uid and g.key == f"{uid}#{g.pass_label}"
        loaded = load_series(g)
        assert set(body_hu(loaded.volume)) == {expected[g.pass_label]}
        # the marker pixel holds 10 x z: every slice sits at its true position
        z = voxel_to_lps(loaded.volume.affine, np.c_[np.zeros(loaded.volume.shape[0]), np.full(loaded.volume.shape[0], 2),
                                                     np.arange(loaded.volume.shape[0])])[:, 2]
        np.testing.assert_allclose(loaded.volume.array[:, 2, 2], np.rint(10 * z), atol=1)


def test_three_phases_a_third_of_a_step_apart_are_three_passes(tmp_path):
    uid = write_passes(tmp_path, [{"z0": 0.0, "body": 10, "tags": {"AcquisitionNumber": 3}},
                                  {"z0": 2.0, "body": 80, "tags": {"AcquisitionNumber": 4}},
                                  {"z0": 4.0, "body": 150, "tags": {"AcquisitionNumber": 5}}])
    groups = passes_in(tmp_path)
    check_uniform_passes(groups, {"acq3": 10, "acq4": 80, "acq5": 150}, uid)
    assert [g.pass_note for g in groups] == [f"pass acq{a} ({a - 2} of 3) of a series split by AcquisitionNumber 3/4/5"
                                             for a in (3, 4, 5)]


@pytest.mark.parametrize("tags,labels", [
    ([{"TemporalPositionIdentifier": 1}, {"TemporalPositionIdentifier": 2}], ["temporal1", "temporal2"]),
    ([{}, {"ContrastBolusAgent": "IOPAMIDOL"}], ["contrast-none", "contrast-IOPAMIDOL"]),
    ([{"ContrastBolusStartTime": "101500"}, {"ContrastBolusStartTime": "101530"}], ["bolus-101500", "bolus-101530"]),
])
def test_phases_told_apart_by_temporal_position_or_contrast(tmp_path, tags, labels):
    uid = write_passes(tmp_path, [{"z0": 0.0, "body": 30, "tags": tags[0]}, {"z0": 3.0, "body": 170, "tags": tags[1]}])
    check_uniform_passes(passes_in(tmp_path), {labels[0]: 30, labels[1]: 170}, uid)


def test_other_kernels_and_thicknesses_are_separate_reconstructions(tmp_path):
    uid = write_passes(tmp_path / "k", [
        {"zs": [0.5 + 2.0 * k for k in range(12)], "body": 45, "kernel": "FC03", "thickness": 2.0},
        {"zs": [0.0 + 3.0 * k for k in range(8)], "body": 300, "kernel": "FC51", "thickness": 3.0},
    ])
    groups = passes_in(tmp_path / "k")
    check_uniform_passes(groups, {"kernel-FC03": 45, "kernel-FC51": 300}, uid)
    assert "ConvolutionKernel FC03/FC51; SliceThickness 2 mm/3 mm" in groups[0].pass_note
    # the same kernel, thin and thick slabs at the same table positions: told apart by SliceThickness
    uid = write_passes(tmp_path / "t", [{"z0": 0.0, "step": 1.0, "n": 20, "body": 60, "thickness": 1.0},
                                        {"z0": 0.0, "step": 5.0, "n": 4, "body": 61, "thickness": 5.0}])
    check_uniform_passes(passes_in(tmp_path / "t"), {"1mm": 60, "5mm": 61}, uid)


def test_interleaved_grids_with_no_telling_attribute_are_split_by_geometry(tmp_path):
    uid = write_passes(tmp_path, [{"z0": 0.0, "step": 5.0, "body": 20}, {"z0": 1.5, "step": 5.0, "body": 120}])
    groups = passes_in(tmp_path)
    check_uniform_passes(groups, {"z0.00": 20, "z1.50": 120}, uid)
    assert groups[0].pass_note == "pass z0.00 (1 of 2) of a series split by interleaved slice positions (grids from 0.00, 1.50 mm)"


@pytest.mark.parametrize("positions,grids", [
    ([0, 1, 5, 6, 10, 11, 15, 16], [[0, 5, 10, 15], [1, 6, 11, 16]]),  # two phases, 1 mm apart
    (list(np.arange(0, 20, 1.25)) + [0.6, 5.6, 10.6, 15.6], [[0.6, 5.6, 10.6, 15.6], list(np.arange(0, 20, 1.25))]),
    (list(range(0, 21)) + [25, 30, 35, 40], None),  # a variable increment is one pass
    ([0, 2, 4, 6.5, 8, 10], None),  # jitter
    ([round(-123.45 + 1.25 * k, 1) for k in range(12)], None),  # 1.25 mm steps written to 0.1 mm: 1.2, 1.3, ...
    ([round(10.0 + 0.625 * k, 1) for k in range(16)], None),  # 0.6 and 0.7 mm steps: four 'grids' 2.5 mm apart
    ([0, 1.2, 5, 6.2, 10, 11.2, 15, 16.2], [[0, 5, 10, 15], [1.2, 6.2, 11.2, 16.2]]),  # two phases, 1.2 mm apart
    ([0, 2, 4, 8, 10, 12], None),  # a missing slice
])
def test_interleaved_grid_detection(positions, grids):
    d = np.sort(np.asarray(positions, float))
    found = interleaved_grids(d)
    if grids is None:
        assert found is None
    else:
        assert sorted(d[g].tolist() for g in found) == sorted(sorted(map(float, g)) for g in grids)


def test_step_and_shoot_acquisition_blocks_stay_one_volume(tmp_path):
    """Contiguous blocks with their own AcquisitionNumber (one per gantry rotation) are one sweep, not passes."""
    uid = generate_uid()
    study, frame = generate_uid(), generate_uid()
    for block in range(4):
        zs = [10.0 * block + 2.5 * k for k in range(4)]
        write_ct_series(tmp_path, z_positions=zs, values=phantom(zs, 50), rows=12, cols=12, series_uid=uid,
                        study_uid=study, frame_of_reference=frame, name_prefix=f"B{block}_",
                        tags={"AcquisitionNumber": block + 1})
    (group,) = passes_in(tmp_path)
    assert group.key == uid and not group.pass_label and not group.excluded
    loaded = load_series(group)
    assert loaded.volume.shape[0] == 16 and not loaded.resampled and loaded.volume.spacing[2] == pytest.approx(2.5)


@pytest.mark.parametrize("increment", [10.5, 9.7])
def test_step_and_shoot_with_a_gap_or_overlap_between_rotations_stays_one_volume(tmp_path, increment):
    """The same scan with the table moving a little more (10.5 mm: a 0.5 mm gap) or less (9.7 mm: overlap) than
    the 4 x 2.5 mm rows cover: each detector row is a regular grid at the increment, and the series became four
    'interleaved' passes (scans) 10.5 mm apart, though every rotation's AcquisitionNumber spans all four. One
    volume, resampled to the rows' 2.5 mm at the true positions."""
    uid = generate_uid()
    study, frame = generate_uid(), generate_uid()
    zs_all = []
    for block in range(5):
        zs = [increment * block + 2.5 * k for k in range(4)]
        zs_all += zs
        write_ct_series(tmp_path, z_positions=zs, values=phantom(zs, 50), rows=12, cols=12, series_uid=uid,
                        study_uid=study, frame_of_reference=frame, name_prefix=f"B{block}_",
                        tags={"AcquisitionNumber": block + 1})
    (group,) = passes_in(tmp_path)
    assert group.key == uid and not group.pass_label
    loaded = load_series(group)
    assert loaded.spacing == "uneven" and loaded.volume.spacing[2] == pytest.approx(2.5)
    vol = loaded.volume
    z = voxel_to_lps(vol.affine, np.c_[np.full(vol.shape[0], 2), np.full(vol.shape[0], 2), np.arange(vol.shape[0])])[:, 2]
    np.testing.assert_allclose(z, min(zs_all) + 2.5 * np.arange(vol.shape[0]), atol=1e-6)
    assert abs(z[-1] - max(zs_all)) <= 1.25  # the whole sweep, to half a step
    inside = z <= max(zs_all)
    np.testing.assert_allclose(vol.array[inside, 2, 2], np.rint(10 * z[inside]), atol=1)  # at its true position
    # phases interleaved, each its own AcquisitionNumber all along: still two passes
    uid = write_passes(tmp_path / "phases", [{"z0": 0.0, "step": 10.5, "body": 20, "tags": {"AcquisitionNumber": 1}},
                                             {"z0": 2.5, "step": 10.5, "body": 120, "tags": {"AcquisitionNumber": 2}}])
    assert len(passes_in(tmp_path / "phases")) == 2


def test_acquisitions_split_only_where_they_cover_the_same_stretch(tmp_path):
    # a second acquisition re-scanning part of the first (same positions): two passes
    uid = write_passes(tmp_path / "rescan", [{"z0": 0.0, "step": 2.0, "n": 15, "body": 40, "tags": {"AcquisitionNumber": 1}},
                                             {"z0": 10.0, "step": 2.0, "n": 5, "body": 90, "tags": {"AcquisitionNumber": 2}}])
    check_uniform_passes(passes_in(tmp_path / "rescan"), {"acq1": 40, "acq2": 90}, uid)
    # two sweeps that only touch (one shared position at the seam): one series, refused for that duplicate when
    # the two images there differ; the same HU twice is one image (a copy, left out and noted)
    write_passes(tmp_path / "seam", [{"z0": 0.0, "step": 2.0, "n": 8, "body": 40, "tags": {"AcquisitionNumber": 1}},
                                     {"z0": 14.0, "step": 2.0, "n": 8, "body": 41, "tags": {"AcquisitionNumber": 2}}])
    (group,) = passes_in(tmp_path / "seam")
    with pytest.raises(SeriesError, match=r"duplicate slice positions: 1 position\(s\) hold more than one image \(first "
                                          r"at 14.00 mm"):
        load_series(group)
    write_passes(tmp_path / "same", [{"z0": 0.0, "step": 2.0, "n": 8, "body": 40, "tags": {"AcquisitionNumber": 1}},
                                     {"z0": 14.0, "step": 2.0, "n": 8, "body": 40, "tags": {"AcquisitionNumber": 2}}])
    (group,) = passes_in(tmp_path / "same")
    loaded = load_series(group)
    assert loaded.volume.shape[0] == 15 and len(loaded.copies) == 1 and not loaded.resampled
    assert "1 image(s) left out as copies of another at the same position with the same HU" in loaded.notes


def test_identical_positions_with_nothing_telling_them_apart_are_refused_as_duplicates(tmp_path):
    write_passes(tmp_path, [{"z0": 0.0, "body": 40}, {"z0": 0.0, "body": 140}])
    (group,) = passes_in(tmp_path)
    with pytest.raises(SeriesError, match=r"duplicate slice positions: 8 position\(s\) hold more than one image"):
        load_series(group)


# -- odd instances ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["A", "Q", "Z"])  # the odd file sorts first, in the middle, last
def test_one_instance_of_another_orientation_is_excluded_and_the_rest_imported(tmp_path, prefix):
    uid = generate_uid()
    study, frame = generate_uid(), generate_uid()
    zs = [2.5 * k for k in range(8)]
    write_ct_series(tmp_path, z_positions=zs, values=phantom(zs, 40), rows=12, cols=12, series_uid=uid,
                    study_uid=study, frame_of_reference=frame, name_prefix="M")
    write_ct_series(tmp_path, n=1, rows=12, cols=12, series_uid=uid, study_uid=study, frame_of_reference=frame,
                    orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), name_prefix=prefix)
    (group,) = passes_in(tmp_path)
    assert group.key == uid and len(group.instances) == 8 and exclusion_reason(group) is None
    ((odd, reason),) = group.excluded
    assert odd.path.name.startswith(prefix)
    assert reason.startswith(f"odd instance {odd.path.name} excluded: orientation coronal (series: axial)")
    assert "non-axial series" in reason and "the series' other 8 images go on without it" in reason
    loaded = load_series(group)
    assert loaded.volume.shape[0] == 8 and loaded.notes == f"1 odd instance(s) excluded: {odd.path.name} (orientation)"


def test_odd_localizer_and_odd_matrix_size_are_excluded_one_by_one(tmp_path):
    uid = generate_uid()
    study, frame = generate_uid(), generate_uid()
    zs = [3.0 * k for k in range(6)]
    write_ct_series(tmp_path, z_positions=zs, values=phantom(zs, 40), rows=12, cols=12, series_uid=uid,
                    study_uid=study, frame_of_reference=frame, name_prefix="M")
    write_ct_series(tmp_path, n=1, rows=12, cols=12, series_uid=uid, study_uid=study, frame_of_reference=frame,
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), name_prefix="L")
    write_ct_series(tmp_path, z_positions=[6.0], rows=8, cols=8, series_uid=uid, study_uid=study,
                    frame_of_reference=frame, name_prefix="S")
    (group,) = passes_in(tmp_path)
    reasons = {h.path.name[0]: r for h, r in group.excluded}
    assert set(reasons) == {"L", "S"}
    assert "image type ORIGINAL\\PRIMARY\\LOCALIZER (series: ORIGINAL\\PRIMARY\\AXIAL)" in reasons["L"]
    assert "localizer/scout image" in reasons["L"]
    assert "matrix size 8x8 (series: 12x12)" in reasons["S"]
    assert set(body_hu(load_series(group).volume)) == {40}


def test_a_pass_of_another_orientation_with_enough_images_is_refused_by_name(tmp_path):
    uid = generate_uid()
    study, frame = generate_uid(), generate_uid()
    write_ct_series(tmp_path, n=5, rows=12, cols=12, series_uid=uid, study_uid=study, frame_of_reference=frame,
                    name_prefix="A")
    write_ct_series(tmp_path, n=4, rows=12, cols=12, series_uid=uid, study_uid=study, frame_of_reference=frame,
                    orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), name_prefix="C")
    groups = {g.pass_label: g for g in passes_in(tmp_path)}
    assert set(groups) == {"axial", "coronal"} and not any(g.excluded for g in groups.values())
    assert exclusion_reason(groups["axial"]) is None
    assert exclusion_reason(groups["coronal"]).startswith("non-axial series")
    assert "pass coronal" in groups["coronal"].describe()


# -- slice increments ------------------------------------------------------------------------------------------
def check_resampled_at_true_positions(volume: Volume, step: float, z0: float, z1: float) -> None:
    assert volume.spacing[2] == pytest.approx(step)
    z = voxel_to_lps(volume.affine, np.c_[np.full(volume.shape[0], 2), np.full(volume.shape[0], 2),
                                          np.arange(volume.shape[0])])[:, 2]
    np.testing.assert_allclose(z, z0 + step * np.arange(volume.shape[0]), atol=1e-6)
    assert z[-1] == pytest.approx(z1)
    np.testing.assert_allclose(volume.array[:, 2, 2], np.rint(10 * z), atol=1)  # linear in z: exact up to rounding


def test_fine_slices_then_5mm_are_a_variable_increment_resampled_not_missing_slices(tmp_path):
    zs = [float(z) for z in range(0, 21)] + [25.0, 30.0, 35.0, 40.0, 45.0]
    write_ct_series(tmp_path, z_positions=zs, values=phantom(zs, 40), rows=12, cols=12)
    (group,) = passes_in(tmp_path)
    loaded = load_series(group)
    assert loaded.resampled and loaded.spacing == "variable"
    assert "variable slice increment (1.00 mm x20, 5.00 mm x5): resampled to a regular 1.000 mm grid" in loaded.notes
    check_resampled_at_true_positions(loaded.volume, 1.0, 0.0, 45.0)


def test_variable_increment_in_the_middle_is_resampled_to_the_finest(tmp_path):
    zs = [-30.0 + 3.0 * k for k in range(8)] + [-7.5 + 0.75 * k for k in range(21)] + [9.0 + 3.0 * k for k in range(6)]
    write_ct_series(tmp_path, z_positions=zs, values=phantom(zs, 40), rows=12, cols=12)
    loaded = load_series(passes_in(tmp_path)[0])
    assert loaded.spacing == "variable" and "resampled to a regular 0.750 mm grid" in loaded.notes
    check_resampled_at_true_positions(loaded.volume, 0.75, -30.0, 24.0)


@pytest.mark.parametrize("zs,message", [
    ([0, 1, 2, 3, 4, 8, 9, 10, 11], r"missing slices: gap of 4.00 mm after slice 4 at 4.00 mm \(local step 1.00 mm, "
                                    r"about 3 slices missing\)"),
    ([0, 1, 2, 3, 4, 5, 10, 15, 20, 40, 45, 50], r"missing slices: gap of 20.00 mm after slice 8 at 20.00 mm "
                                                 r"\(local step 5.00 mm, about 3 slices missing\)"),
])
def test_missing_slices_are_told_from_a_variable_increment(zs, message):
    with pytest.raises(SeriesError, match=message):
        plan_spacing(np.asarray(zs, float))


def test_one_missing_slice_in_a_variable_increment_is_interpolated():
    plan = plan_spacing(np.asarray([0, 1, 2, 3, 4, 5, 10, 15, 25, 30, 35], float))
    assert plan.kind == "variable" and plan.step == 1.0
    assert plan.notes[1] == "one missing slice: gap of 10.00 mm after slice 7 interpolated"


# -- canonical orientation -------------------------------------------------------------------------------------
def reference_volume() -> Volume:
    rng = np.random.default_rng(7)
    array = rng.integers(-1000, 1500, (9, 11, 13)).astype(np.int16)  # [k, j, i] on LPS+ axes
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-40.0, -30.0, 100.0]
    return Volume(array, affine)


def store_as(volume: Volume, order: tuple[int, int, int], flips: tuple[int, ...], path: Path) -> Path:
    """Write ``volume`` as a NIfTI whose array axes are the LPS+ axes ``order`` (of i, j, k), flipped at ``flips``."""
    data = volume.array.transpose(2, 1, 0)  # [i, j, k]
    t = np.zeros((4, 4))
    t[3, 3] = 1
    data = data.transpose(order)
    for a in flips:
        data = np.flip(data, axis=a)
    for new, old in enumerate(order):  # new voxel index -> old (LPS+) index
        t[old, new] = -1 if new in flips else 1
        t[old, 3] = data.shape[new] - 1 if new in flips else 0
    img = nib.Nifti1Image(np.ascontiguousarray(data), LPS_TO_RAS @ volume.affine @ t)
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("order,flips", [((1, 2, 0), (1,)), ((2, 0, 1), (0, 2)), ((0, 1, 2), (0, 1, 2))])
def test_any_nifti_axis_permutation_with_flips_lands_on_the_canonical_axes(tmp_path, order, flips):
    ref = reference_volume()
    entry = read_nifti_entry(store_as(ref, order, flips, tmp_path / "x.nii.gz"))
    assert np.array_equal(entry.volume.array, ref.array)
    np.testing.assert_allclose(entry.volume.affine, ref.affine, atol=1e-5)
    assert entry.notes[0].startswith("reoriented from file axes")
    # the file's own grid is kept: file index = to_source @ canonical index
    i, j, k = 3, 4, 5
    src = entry.to_source @ np.array([i, j, k, 1])
    np.testing.assert_allclose(voxel_to_lps(entry.source_affine_lps, src[:3]), voxel_to_lps(ref.affine, [i, j, k]))


def test_nifti_without_an_axial_axis_is_refused_and_qform_sform_disagreement_noted(tmp_path):
    ref = reference_volume()
    rot = np.eye(4)
    a = math.radians(45)
    rot[1:3, 1:3] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    oblique = nib.Nifti1Image(ref.array.transpose(2, 1, 0).copy(), LPS_TO_RAS @ rot @ ref.affine)
    nib.save(oblique, tmp_path / "oblique.nii.gz")
    with pytest.raises(ValueError, match="non-axial volume"):
        read_nifti_entry(tmp_path / "oblique.nii.gz")
    img = nib.Nifti1Image(ref.array.transpose(2, 1, 0).copy(), LPS_TO_RAS @ ref.affine)
    q = img.affine.copy()
    q[:3, 3] += [0.0, 0.0, 12.0]
    img.header.set_qform(q, code=1)
    img.header.set_sform(img.affine, code=2)
    nib.save(img, tmp_path / "disagree.nii.gz")
    entry = read_nifti_entry(tmp_path / "disagree.nii.gz")
    assert any("qform (scanner, LPS) and sform (aligned, LPS) disagree by up to 12.0 mm: the sform is used" in n
               for n in entry.notes)
    np.testing.assert_allclose(entry.volume.affine, to_canonical(Volume(ref.array, LPS_TO_RAS @ img.affine))[0].affine)


def test_nifti_whose_left_and_right_cannot_be_told_is_refused(tmp_path):
    """No qform and no sform (orientation unknown), or a qform and sform of different orientations (readers differ
    in which they take): refused, since every verdict here is per side."""
    ref = reference_volume()
    bare = nib.Nifti1Image(ref.array.transpose(2, 1, 0).copy(), None)  # no affine: both codes 0
    nib.save(bare, tmp_path / "bare.nii.gz")
    assert int(nib.load(tmp_path / "bare.nii.gz").header["sform_code"]) == 0
    with pytest.raises(ValueError, match="neither qform nor sform .* which side is the patient's left"):
        read_nifti_entry(tmp_path / "bare.nii.gz")
    flipped = nib.Nifti1Image(ref.array.transpose(2, 1, 0).copy(), LPS_TO_RAS @ ref.affine)
    mirror = flipped.affine.copy()
    mirror[0, :] *= -1  # the qform says the first axis runs the other way: left and right swapped
    flipped.header.set_qform(mirror, code=1)
    flipped.header.set_sform(flipped.affine, code=1)
    nib.save(flipped, tmp_path / "flipped.nii.gz")
    with pytest.raises(ValueError, match=r"qform \(\w+\) and sform \(\w+\) give different orientations"):
        read_nifti_entry(tmp_path / "flipped.nii.gz")


def test_prone_dicom_series_lands_on_the_same_canonical_axes(tmp_path):
    """Orientation -1,0,0 / 0,-1,0 (prone): rows run right-to-left and columns anterior; stored canonical."""
    zs = [2.0 * k for k in range(5)]
    values = phantom(zs, 40)
    values[:, 4, 7] = 3000  # one bright voxel at a known place
    write_ct_series(tmp_path, z_positions=zs, values=values, rows=12, cols=12, pixel_spacing=(0.8, 0.7),
                    orientation=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    loaded = load_series(passes_in(tmp_path)[0])
    v = loaded.volume
    assert (np.diag(v.affine)[:3] > 0).all() and "flipped i, j" in loaded.notes
    ds = pydicom.dcmread(sorted(tmp_path.iterdir())[0])
    origin = np.asarray(ds.ImagePositionPatient, float)
    expected = origin + np.array([-0.7 * 7, -0.8 * 4, 0.0])  # column 7, row 4 of the file
    k, j, i = np.argwhere(v.array == 3000 - 1024)[0]  # stored 3000 = 1976 HU
    np.testing.assert_allclose(voxel_to_lps(v.affine, [i, j, 0])[:2], expected[:2], atol=1e-6)


def test_nifti_voxels_that_are_not_numbers_are_stored_as_air_and_noted(tmp_path):
    ref = reference_volume()
    data = ref.array.transpose(2, 1, 0).astype(np.float32)
    data[1, 2, 3], data[2, 2, 3] = np.nan, np.inf
    nib.save(nib.Nifti1Image(data, LPS_TO_RAS @ ref.affine), tmp_path / "nan.nii.gz")
    entry = read_nifti_entry(tmp_path / "nan.nii.gz")
    assert entry.volume.array[3, 2, 1] == -1024 and entry.volume.array[3, 2, 2] == -1024
    assert "2 voxel(s) not a number (NaN or infinity) stored as -1024 HU" in entry.notes
