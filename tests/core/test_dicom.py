"""The Django-free DICOM core on real files (TotalSegmentator's JPEG 2000 series, pydicom's quirky test
files) and on small pydicom-written series with blank UIDs, uneven spacing, missing slices and tilt."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import RLELossless

from inference.ml.dicom import (
    NotDicom,
    SeriesError,
    exclusion_reason,
    group_series,
    load_series,
    read_header,
    scan_files,
)
from inference.ml.dicom.pixels import DecodeError, read_frames
from inference.ml.geometry import lps_to_voxel, voxel_to_lps
from tests.plugins.store import write_ct_series


def load_dir(folder: Path, **kw):
    groups = group_series([read_header(p) for p in scan_files(folder)], folder)
    assert len(groups) == 1, [g.describe() for g in groups]
    return groups[0], load_series(groups[0], **kw)


def sitk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    affine[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img), affine


def test_real_jpeg2000_series_equals_simpleitk(realct):
    folder = realct["example_ct_dicom"]
    group, loaded = load_dir(folder)
    # Study, Series and SOP UIDs are blank in the datasets: fallback keys, nothing refused or merged.
    assert group.uid_source == "folder+geometry" and group.key.startswith("x-")
    assert {h.key_source for h in group.instances} == {"file-meta"}
    assert len({h.key for h in group.instances}) == 20
    assert exclusion_reason(group) is None
    expected, affine = sitk_series(folder)
    assert loaded.volume.array.dtype == np.int16 and loaded.volume.shape == expected.shape == (20, 512, 512)
    assert np.array_equal(loaded.volume.array, expected)
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)
    assert not loaded.resampled


def test_rle_copy_of_the_real_series_decodes_identically(realct, tmp_path):
    src = sorted(realct["example_ct_dicom"].iterdir())[:4]
    for p in src:
        ds = pydicom.dcmread(p)
        ds.decompress()
        ds.compress(RLELossless)
        ds.save_as(tmp_path / p.name)
    for p in src:
        _, rle = read_frames(tmp_path / p.name)
        _, j2k = read_frames(p)
        assert np.array_equal(rle, j2k)


def test_enhanced_multiframe_ct_uses_functional_group_rescale_and_positions(realct):
    path = realct["pydicom_data"] / "eCT_Supplemental.dcm"
    h = read_header(path)
    assert h.is_multiframe and len(h.frames) == 2 and h.frames[0].intercept == -1024.0
    group = group_series([h])[0]
    assert "too short" in exclusion_reason(group)  # two frames cannot make 2.5D images
    loaded = load_series(group, min_slices=2)
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.astype(np.int32)
    positions = [tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                 for f in ds.PerFrameFunctionalGroupsSequence]
    # orientation (-1,0,0 / 0,1,0), normal -z: on the store's LPS axes the columns are flipped (i -> +x) and the
    # slices ascend in z (k -> +z); every voxel keeps its value and its place in mm.
    order = np.argsort([p[2] for p in positions])
    assert np.array_equal(loaded.volume.array, (raw[order][:, :, ::-1] - 1024).astype(np.int16))
    assert (np.diag(loaded.volume.affine)[:3] > 0).all() and "flipped i, k" in loaded.notes
    np.testing.assert_allclose(voxel_to_lps(loaded.volume.affine, [raw.shape[2] - 1, 0, 0]), positions[order[0]],
                               atol=1e-4)


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm"])
def test_transfer_syntaxes_decode_to_the_uncompressed_reference(realct, name):
    _, ref = read_frames(realct["pydicom_test_files"] / "MR_small.dcm")
    _, arr = read_frames(realct["pydicom_test_files"] / name)
    assert np.array_equal(arr.astype(np.int32), ref.astype(np.int32))


def test_deflated_file_decodes(realct):
    ds, arr = read_frames(realct["pydicom_test_files"] / "image_dfl.dcm")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99" and arr.shape == (1, 512, 512)


def test_files_without_file_meta_are_read(realct, tmp_path):
    h = read_header(realct["pydicom_test_files"] / "ExplVR_LitEndNoMeta.dcm")
    assert h.transfer_syntax == "" and h.key_source == "dicom"
    folder, hu = write_ct_series(tmp_path / "s", n=4)
    for p in folder.iterdir():  # rewrite as bare implicit-VR datasets: no preamble, no file meta
        ds = pydicom.dcmread(p)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(p, implicit_vr=True, little_endian=True, enforce_file_format=False)
        assert p.read_bytes()[128:132] != b"DICM"
    _, loaded = load_dir(folder)
    assert np.array_equal(loaded.volume.array, hu)


def test_truncated_pixel_data_is_a_clear_error(realct, tmp_path):
    with pytest.raises(DecodeError, match="pixel data truncated"):
        read_frames(realct["pydicom_test_files"] / "MR_truncated.dcm")
    folder, _ = write_ct_series(tmp_path / "s", n=4)
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(SeriesError, match="pixel data truncated"):
        load_dir(folder)


def test_non_dicom_files_are_refused_with_a_reason(realct, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotDicom, match="not a DICOM file"):
        read_header(tmp_path / "notes.txt")
    with pytest.raises(NotDicom):
        read_header(realct["pydicom_test_files"] / "README.txt")


@pytest.mark.parametrize("signed,slope,intercept", [(False, 1.0, -1024.0), (True, 1.0, -1024.0), (False, 2.0, -2048.0),
                                                     (False, 0.5, -1000.5)])
def test_signed_unsigned_pixels_with_rescale(tmp_path, signed, slope, intercept):
    folder, hu = write_ct_series(tmp_path / "s", n=4, signed=signed, slope=slope, intercept=intercept)
    _, loaded = load_dir(folder)
    assert np.array_equal(loaded.volume.array, hu)
    expected, affine = sitk_series(folder)
    assert np.array_equal(loaded.volume.array, np.rint(expected).astype(np.int16))
    np.testing.assert_allclose(loaded.volume.affine, affine, atol=1e-4)


def test_sorted_along_the_normal_not_by_instance_number_or_name(tmp_path):
    zs = [10.0, 0.0, 7.5, 2.5, 5.0]
    folder, hu = write_ct_series(tmp_path / "s", z_positions=zs)
    _, loaded = load_dir(folder)
    assert np.array_equal(loaded.volume.array, hu)
    assert loaded.volume.affine[2, 3] == pytest.approx(0.0) and loaded.volume.spacing[2] == pytest.approx(2.5)


def test_blank_series_uids_fall_back_without_merging(tmp_path):
    a, _ = write_ct_series(tmp_path / "A", series_uid=None, study_uid=None, sop_uids_blank=True, n=4)
    b, _ = write_ct_series(tmp_path / "B", series_uid=None, study_uid=None, sop_uids_blank=True, n=5, seed=3)
    groups = group_series([read_header(p) for p in scan_files(tmp_path)], tmp_path)
    assert sorted(len(g.instances) for g in groups) == [4, 5]
    assert all(g.uid_source == "folder+geometry" for g in groups)
    assert all(h.key_source == "file-meta" for g in groups for h in g.instances)
    # Same UID in two folders (a split export) is one series.
    uid = pydicom.uid.generate_uid()
    write_ct_series(tmp_path / "C1", series_uid=uid, z0=0, n=3)
    write_ct_series(tmp_path / "C2", series_uid=uid, z0=7.5, n=3)
    groups = [g for g in group_series([read_header(p) for p in scan_files(tmp_path)], tmp_path) if g.key == uid]
    assert len(groups) == 1 and len(groups[0].instances) == 6


def test_uneven_spacing_is_resampled_linearly(tmp_path):
    zs = [0.0, 2.0, 4.0, 6.5, 8.0, 10.0]
    values = np.stack([np.full((8, 8), 1024 + 10 * z, np.uint16) for z in zs])
    folder, _ = write_ct_series(tmp_path / "s", z_positions=zs, rows=8, cols=8, values=values)
    _, loaded = load_dir(folder)
    assert loaded.resampled and "uneven spacing" in loaded.notes
    assert loaded.volume.shape == (6, 8, 8) and loaded.volume.spacing[2] == pytest.approx(2.0)
    np.testing.assert_array_equal(loaded.volume.array[:, 0, 0], [0, 20, 40, 60, 80, 100])


def test_one_missing_slice_is_interpolated_more_are_refused(tmp_path):
    values = np.stack([np.full((8, 8), 1024 + 10 * z, np.uint16) for z in (0, 2, 6, 8, 10)])
    folder, _ = write_ct_series(tmp_path / "one", z_positions=[0, 2, 6, 8, 10], rows=8, cols=8, values=values)
    _, loaded = load_dir(folder)
    assert loaded.resampled and loaded.volume.shape[0] == 6
    np.testing.assert_array_equal(loaded.volume.array[:, 3, 3], [0, 20, 40, 60, 80, 100])
    folder, _ = write_ct_series(tmp_path / "three", z_positions=[0, 2, 4, 12, 14, 16], rows=8, cols=8)
    with pytest.raises(SeriesError, match="missing slices: gap of 8.00 mm"):
        load_dir(folder)


def test_geometry_that_is_not_numbers_is_named_as_such(tmp_path):
    """A NaN in ImagePositionPatient (or no PixelSpacing) is refused naming the element, not a numpy error."""
    folder, _ = write_ct_series(tmp_path / "nan", z_positions=[0, 2, 4, 6], rows=8, cols=8)
    files = sorted(scan_files(folder))
    ds = pydicom.dcmread(files[1])
    ds.ImagePositionPatient = ["nan", "nan", "nan"]
    ds.save_as(files[1])
    assert read_header(files[1]).frames[0].position is None
    group = group_series([read_header(p) for p in scan_files(folder)], folder)
    with pytest.raises(SeriesError, match=r"ImagePositionPatient missing or not numbers for frame 0 of"):
        load_series(group[0])
    folder, _ = write_ct_series(tmp_path / "nospacing", z_positions=[0, 2, 4, 6], rows=8, cols=8)
    for f in scan_files(folder):
        ds = pydicom.dcmread(f)
        del ds.PixelSpacing
        ds.save_as(f)
    with pytest.raises(SeriesError, match=r"^PixelSpacing missing or not numbers: geometry unknown"):
        load_dir(folder)


def test_duplicate_positions_are_refused(tmp_path):
    folder, _ = write_ct_series(tmp_path / "s", z_positions=[0, 2, 2, 4])
    with pytest.raises(SeriesError, match="duplicate slice positions"):
        load_dir(folder)


def test_gantry_tilt_is_resampled_onto_lps_axes(tmp_path):
    n, size = 5, 12
    values = np.zeros((n, size, size), np.uint16) + 24  # -1000 HU
    # each slice origin moves +0.8 mm (one row) in y: one fixed point appears one row earlier per slice
    for k in range(n):
        values[k, 6 - k, 4] = 2024
    folder, _ = write_ct_series(tmp_path / "s", n=n, rows=size, cols=size, step=2.0, tilt_mm_per_slice=0.8,
                                values=values, pixel_spacing=(0.8, 0.7))
    _, loaded = load_dir(folder)
    assert loaded.resampled and "gantry tilt" in loaded.notes and loaded.tilt_deg == pytest.approx(21.8, abs=0.1)
    vol = loaded.volume
    np.testing.assert_allclose(vol.affine[:3, :3], np.diag(vol.spacing), atol=1e-9)  # stored on LPS axes
    # the bright point is at LPS x = -50 + 4 * 0.7, y = -60 + 0.8*k + 0.8*(6-k) = -55.2 on every slice (2 mm apart)
    for k in range(n):
        kk = int(round(lps_to_voxel(vol.affine, [-47.2, -55.2, vol.affine[2, 3] + 2.0 * k])[2]))
        j, i = np.unravel_index(np.argmax(vol.array[kk]), vol.array[kk].shape)
        x, y, _ = voxel_to_lps(vol.affine, [i, j, kk])
        assert vol.array[kk, j, i] > 0 and abs(x + 47.2) <= 0.7 and abs(y + 55.2) <= 0.8, (k, x, y)


def test_exclusions_have_reasons(tmp_path):
    loc, _ = write_ct_series(tmp_path / "loc", n=1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    cor, _ = write_ct_series(tmp_path / "cor", n=4, orientation=(1, 0, 0, 0, 0, -1))
    mr, _ = write_ct_series(tmp_path / "mr", n=4, modality="MR")
    sc, _ = write_ct_series(tmp_path / "sc", n=4, image_type=("DERIVED", "SECONDARY"))
    short, _ = write_ct_series(tmp_path / "short", n=2)
    reasons = {}
    for folder in (loc, cor, mr, sc, short):
        (group,) = group_series([read_header(p) for p in scan_files(folder)], folder)
        reasons[folder.name] = exclusion_reason(group)
    assert reasons["loc"] == "localizer/scout image"
    assert reasons["cor"].startswith("non-axial series")
    assert reasons["mr"] == "non-CT modality MR"
    assert reasons["sc"].startswith("secondary capture")
    # a Secondary Capture object (pydicom's test files: without Modality, or with OT) is named as one, not as a
    # "non-CT modality (none)"
    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in ("SC_jpeg_no_color_transform.dcm", "SC_rgb_jpeg.dcm"):
        (group,) = group_series([read_header(test_files / name)], tmp_path)
        assert exclusion_reason(group) == "secondary capture (derived screenshot, not a CT acquisition)", name
    assert reasons["short"].startswith("too short for 2.5D images: 2 slice(s)")
    for element in ("ImageOrientationPatient", "PixelSpacing"):  # missing geometry is one kind: skipped, named
        folder, _ = write_ct_series(tmp_path / element, n=4)
        for f in scan_files(folder):
            ds = pydicom.dcmread(f)
            delattr(ds, element)
            ds.save_as(f)
        (group,) = group_series([read_header(p) for p in scan_files(folder)], folder)
        assert exclusion_reason(group) == f"{element} missing or not numbers: geometry unknown"


def test_jpeg_lossless_and_jpeg2000_decode_like_the_references(realct):
    from pydicom.pixels import pixel_array

    data = realct["pydicom_data"]
    _, jpeg_ll = read_frames(data / "JPEG-LL.dcm")  # JPEG lossless, process 14
    assert np.array_equal(jpeg_ll[0], pixel_array(data / "JPEG-LL.dcm", decoding_plugin="gdcm"))
    _, j2k = read_frames(data / "693_J2KR.dcm")
    _, unc = read_frames(data / "693_UNCR.dcm")
    assert np.array_equal(j2k, unc)


def test_modality_lut_sequence_gives_hu(tmp_path):
    folder, _ = write_ct_series(tmp_path / "s", n=3, rows=8, cols=8)
    lut = (np.arange(4096, dtype=np.int32) * 2 + 100).astype(np.uint16)  # 2*v + 100, 16-bit entries
    for p in folder.iterdir():
        ds = pydicom.dcmread(p)
        del ds.RescaleSlope, ds.RescaleIntercept
        item = pydicom.Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.ModalityLUTType = "HU"
        item.LUTData = lut.tobytes()
        ds.ModalityLUTSequence = [item]
        ds.save_as(p)
    _, loaded = load_dir(folder)
    stored = np.stack([pydicom.dcmread(p).pixel_array for p in sorted(folder.iterdir(),
                       key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))])
    expected = np.clip(stored.astype(np.int32), 0, 4095) * 2 + 100
    assert np.array_equal(loaded.volume.array.astype(np.int32), expected)


def test_tilted_gantry_geometry_keeps_anatomy_where_it_is(tmp_path):
    """A real tilted acquisition: rows tilted by 20 degrees about x, the table stepping 3 mm in z. A rod along
    z at y = -50 mm must lie at y = -50 mm (through the stored affine) on every corrected slice."""
    import math

    t = math.radians(20.0)
    n, size, sr = 6, 40, 1.0
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t))
    origin_y = -60.0
    values = np.full((n, size, size), 24, np.uint16)
    rod_row = int(round((-50.0 - origin_y) / (sr * math.cos(t))))  # same row on every tilted slice
    values[:, rod_row, 10] = 2024
    positions = [(-50.0, origin_y, 3.0 * k) for k in range(n)]
    folder, _ = write_ct_series(tmp_path / "s", values=values, rows=size, cols=size, orientation=orientation,
                                positions=positions, pixel_spacing=(sr, 1.0), shuffle_names=False)
    _, loaded = load_dir(folder)
    assert loaded.resampled and loaded.tilt_deg == pytest.approx(20.0, abs=0.1)
    vol = loaded.volume
    # stored on LPS axes (resampled from the tilted grid), so a voxel row is a patient axis
    np.testing.assert_allclose(vol.affine[:3, :3], np.diag(vol.spacing), atol=1e-9)
    assert "resampled from an oblique grid (voxel axes up to 20.0 deg off" in loaded.notes
    rod_y = origin_y + rod_row * sr * math.cos(t)  # -49.66: the rod's row centre
    i_rod = int(round(lps_to_voxel(vol.affine, [-40.0, rod_y, 0.0])[0]))
    checked = 0
    for k in range(vol.shape[0]):
        column = vol.array[k, :, i_rod].astype(float)
        if column.max() < -900:  # the rod (1000 HU, thinned by interpolation) was not scanned at this z
            continue
        checked += 1
        j = float(np.average(np.arange(vol.shape[1]), weights=np.clip(column + 1000, 0, None)))
        y = voxel_to_lps(vol.affine, [i_rod, j, k])[1]
        assert y == pytest.approx(rod_y, abs=0.6), (k, j, y)
    assert checked >= n
