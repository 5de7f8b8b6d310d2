"""Volumes whose voxel axes are oblique to the patient axes (a gantry-tilted DICOM series, a NIfTI rotated in its
sform) are stored on LPS axes (``volume.to_store_grid``): the viewer, proposals, crops and 2.5D images read a
voxel row as a patient axis, so an oblique stored affine put boxes dragged on the sagittal view 35-41 mm away.
Real files: the 20-slice TotalSegmentator DICOM series rewritten for a 15 deg tilt, example_ct_sm rotated 30 deg."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.conf import settings
from scipy import ndimage

from annotations.models import Dataset, ImportItem, Series
from annotations.services.importer import import_path
from inference.ml.geometry import LPS_TO_RAS, lps_to_voxel, volume_extent, voxel_to_lps
from inference.ml.volume import load_nifti

pytestmark = pytest.mark.django_db


def stored(series: Series):
    return load_nifti(Path(settings.MEDIA_ROOT) / series.volume.file.name)


def assert_axis_aligned(affine: np.ndarray) -> None:
    a = np.asarray(affine, float)[:3, :3]
    assert np.count_nonzero(np.abs(a) > 1e-9) == 3 and np.all(np.diag(a) > 0), a  # i -> L, j -> P, k -> S


def assert_covers(affine: np.ndarray, shape_kji, source_affine: np.ndarray, source_shape_kji) -> None:
    got, want = volume_extent(affine, shape_kji), volume_extent(source_affine, source_shape_kji)
    assert np.all(np.asarray(got.lps_min) <= np.asarray(want.lps_min) + 1e-3)
    assert np.all(np.asarray(got.lps_max) >= np.asarray(want.lps_max) - 1e-3)


def hu_at(volume, xyz: np.ndarray) -> np.ndarray:
    """The stored volume's HU at LPS points, linear between voxel centres."""
    ijk = lps_to_voxel(volume.affine, xyz)
    return ndimage.map_coordinates(volume.array.astype(np.float32), ijk[:, ::-1].T, order=1, mode="nearest")


def source_series(realct) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """The real series sorted by z, and its HU stack ``[k, j, i]``."""
    files = sorted(Path(realct["example_ct_dicom"]).iterdir())
    ds = sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds]).astype(np.float32)
    return ds, hu


def test_axis_aligned_dicom_series_is_stored_bit_for_bit(realct, tmp_path):
    src = tmp_path / "plain"
    shutil.copytree(realct["example_ct_dicom"], src)
    import_path(Dataset.objects.create(name="plain"), src)
    series = Series.objects.get()
    vol = stored(series)
    _, hu = source_series(realct)
    assert np.array_equal(vol.array, hu.astype(np.int16))  # no resampling
    assert_axis_aligned(vol.affine)
    assert not series.volume.resampled and "oblique" not in series.volume.notes


def write_tilted(realct, folder: Path, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The real series as a gantry-tilted acquisition: rows along x, columns tilted ``degrees`` about x, the table
    stepping along z as before. Returns the sheared source affine (voxel -> LPS) and the HU stack."""
    folder.mkdir()
    ds, hu = source_series(realct)
    t = math.radians(degrees)
    orientation = [1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t)]
    for n, d in enumerate(ds):
        d.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        d.ImagePositionPatient = [str(v) for v in d.ImagePositionPatient]  # x, y kept; z is the table position
        d.GantryDetectorTilt = degrees
        d.save_as(folder / f"slice{n:03d}.dcm")
    ps = [float(v) for v in ds[0].PixelSpacing]  # row spacing, column spacing
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(orientation[:3]) * ps[1]
    affine[:3, 1] = np.asarray(orientation[3:]) * ps[0]
    affine[:3, 2] = np.asarray(ds[1].ImagePositionPatient, float) - np.asarray(ds[0].ImagePositionPatient, float)
    affine[:3, 3] = np.asarray(ds[0].ImagePositionPatient, float)
    return affine, hu


def test_gantry_tilted_dicom_series_is_stored_on_lps_axes(realct, tmp_path):
    source_affine, hu = write_tilted(realct, tmp_path / "tilted", 15.0)
    report = import_path(Dataset.objects.create(name="tilt"), tmp_path / "tilted")
    assert not report.items.filter(status=ImportItem.Status.FAILED).exists()
    series = Series.objects.get()
    notes = series.volume.notes
    assert "gantry tilt 15.0 deg" in notes and "resampled from an oblique grid (voxel axes up to 15.0 deg off" in notes
    assert series.volume.resampled
    vol = stored(series)
    assert_axis_aligned(vol.affine)
    assert_covers(vol.affine, vol.shape, source_affine, hu.shape)
    # the source's own voxel centres (away from its first and last slice and edges), through its own affine
    rng = np.random.default_rng(0)
    kji = np.stack([rng.integers(2, hu.shape[0] - 2, 4000), rng.integers(40, 470, 4000),
                    rng.integers(40, 470, 4000)], axis=1)
    xyz = voxel_to_lps(source_affine, kji[:, ::-1])
    want = hu[kji[:, 0], kji[:, 1], kji[:, 2]]
    err = np.abs(hu_at(vol, xyz) - want)
    # reading the stored voxels as if the tilt were absent (what the viewer did) is far worse
    untilted = source_affine.copy()
    untilted[:3, 1] = [0.0, np.linalg.norm(source_affine[:3, 1]), 0.0]
    wrong = np.abs(hu_at(vol, voxel_to_lps(untilted, kji[:, ::-1])) - want)
    assert np.median(err) < 15 and np.percentile(err, 90) < 80, (np.median(err), np.percentile(err, 90))
    assert np.median(wrong) > 3 * np.median(err)


def write_rotated_nifti(realct, path: Path, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """example_ct_sm with its affine rotated ``degrees`` about the axis (1, 1, 0) through the volume's centre.
    Returns the rotated affine (voxel -> LPS) and the data ``[i, j, k]``."""
    img = nib.load(realct["example_ct_sm"])
    affine = LPS_TO_RAS @ img.affine
    axis = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    a = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)
    centre = voxel_to_lps(affine, (np.asarray(img.shape) - 1) / 2)
    moved = np.eye(4)
    moved[:3, :3] = rot
    moved[:3, 3] = centre - rot @ centre
    rotated = moved @ affine
    data = np.asanyarray(img.dataobj)
    out = nib.Nifti1Image(data, LPS_TO_RAS @ rotated)
    out.header.set_qform(out.affine, code=1)
    out.header.set_sform(out.affine, code=1)
    nib.save(out, path)
    return rotated, data.astype(np.float32)


def test_oblique_nifti_is_stored_on_lps_axes(realct, tmp_path):
    (tmp_path / "nii").mkdir()
    source_affine, data = write_rotated_nifti(realct, tmp_path / "nii" / "oblique.nii.gz", 30.0)
    import_path(Dataset.objects.create(name="oblique"), tmp_path / "nii")
    series = Series.objects.get()
    assert series.volume.resampled
    assert series.volume.notes.startswith("resampled from an oblique grid (voxel axes up to ")
    angle = float(series.volume.notes.split("up to ")[1].split(" deg")[0])
    assert 20.0 <= angle <= 30.0  # each axis of a 30 deg rotation about (1, 1, 0) is at most 30 deg off
    vol = stored(series)
    assert_axis_aligned(vol.affine)
    assert_covers(vol.affine, vol.shape, source_affine, data.shape[::-1])
    np.testing.assert_allclose(vol.spacing, [3.0, 3.0, 3.0], atol=1e-6)
    # every stored voxel well inside the file's field: the file's own value there, sampled through its affine
    k, j, i = np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij")
    xyz = voxel_to_lps(vol.affine, np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    src_ijk = lps_to_voxel(source_affine, xyz)
    inside = np.all((src_ijk >= 0.5) & (src_ijk <= np.asarray(data.shape) - 1.5), axis=1)
    assert inside.sum() > 100_000
    want = ndimage.map_coordinates(data, src_ijk[inside].T, order=1)
    got = vol.array.ravel()[inside].astype(np.float32)
    assert np.abs(got - want).max() <= 1.0  # one linear interpolation, rounded to whole HU
    assert np.all(vol.array.ravel()[np.all((src_ijk < -1) | (src_ijk > np.asarray(data.shape)), axis=1)] == -1024)
    # the file's own grid is kept for its crop tables: file index = to_source @ store index
    grid = series.extra["source_grid"]
    to_source = np.asarray(grid["to_source"], float)
    np.testing.assert_allclose((to_source @ np.array([3, 4, 5, 1.0]))[:3],
                               lps_to_voxel(source_affine, voxel_to_lps(vol.affine, [3, 4, 5])), atol=1e-6)


def test_resampling_that_would_exceed_the_voxel_cap_is_refused(realct, tmp_path, monkeypatch):
    (tmp_path / "nii").mkdir()
    _, data = write_rotated_nifti(realct, tmp_path / "nii" / "oblique.nii.gz", 30.0)
    monkeypatch.setenv("ADRENAL_MAX_VOXELS", str(data.size + 1))  # the file fits, its LPS bounding grid does not
    report = import_path(Dataset.objects.create(name="capped"), tmp_path / "nii")
    item = report.items.get()
    assert item.status == ImportItem.Status.FAILED
    assert "resampled from an oblique grid" in item.reason and "ADRENAL_MAX_VOXELS" in item.reason
    assert not Series.objects.exists()
