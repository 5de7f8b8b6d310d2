"""Fixtures of the proposals area: scans stored directly as Dataset/Patient/Study/Series/Volume rows with a
NIfTI written by ``save_nifti`` (no importer needed), and resampled/shifted copies of the real CTs."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.ml.volume import Volume, load_nifti, save_nifti


def resample(volume: Volume, spacing_ijk: tuple[float, float, float], shift_mm=(0.0, 0.0, 0.0),
             order: int = 1) -> Volume:
    """``volume`` on a new grid with ``spacing_ijk`` whose origin is moved by ``shift_mm`` (LPS), same
    orientation; the anatomy stays where it is in mm (values interpolated, outside = -1024)."""
    a = np.asarray(volume.affine, float)
    directions = a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0)
    extent_ijk = (np.asarray(volume.shape[::-1]) - 1) * np.linalg.norm(a[:3, :3], axis=0)
    new_shape_ijk = np.floor(extent_ijk / np.asarray(spacing_ijk)).astype(int) + 1
    new = np.eye(4)
    new[:3, :3] = directions * np.asarray(spacing_ijk)[None, :]
    new[:3, 3] = a[:3, 3] + np.asarray(shift_mm)
    # new voxel (i, j, k) -> old voxel (i, j, k)
    m = np.linalg.inv(a) @ new
    kji = np.indices(tuple(new_shape_ijk[::-1]), dtype=np.float32).reshape(3, -1)
    ijk = kji[::-1]
    old_ijk = m[:3, :3] @ ijk + m[:3, 3:4]
    values = ndimage.map_coordinates(volume.array.astype(np.float32), old_ijk[::-1], order=order, cval=-1024.0)
    return Volume(values.reshape(tuple(new_shape_ijk[::-1])).astype(np.int16), new)


@pytest.fixture
def make_scan(db, settings):
    """``make_scan(volume, dataset="d", patient="P1", series_uid=None, nifti_name=None)`` -> Series with a stored
    volume. ``nifti_name`` records a source NIfTI file of that name (as a NIfTI import would)."""
    from annotations.models import Dataset, Patient, Series, SourceInstance, Study
    from annotations.models import Volume as VolumeRow

    def make(volume: Volume, dataset: str = "d", patient: str = "P1", series_uid: str | None = None,
             nifti_name: str | None = None) -> Series:
        ds, _ = Dataset.objects.get_or_create(name=dataset)
        pat, _ = Patient.objects.get_or_create(dataset=ds, pseudo_id=patient)
        study, _ = Study.objects.get_or_create(patient=pat, study_uid=f"study-{patient}")
        uid = series_uid or f"1.2.826.0.1.{uuid.uuid4().int % 10**12}"
        series = Series.objects.create(study=study, series_uid=uid, modality="CT")
        rel = f"volumes/test-proposals/{uid}.nii.gz"
        save_nifti(volume, Path(settings.MEDIA_ROOT) / rel)
        VolumeRow.objects.create(series=series, file=rel, shape=list(volume.shape),
                                 spacing_mm=[float(s) for s in volume.spacing],
                                 affine=[[float(v) for v in row] for row in volume.affine])
        if nifti_name:
            SourceInstance.objects.create(dataset=ds, series=series, key=f"nifti:{uid}", path=f"in/{nifti_name}")
        return series

    return make


@pytest.fixture(scope="session")
def real_scans(realct) -> dict:
    """The real TotalSegmentator CTs with their multilabel adrenal masks (8 right, 9 left) on the same grid."""
    seg = Path(realct["seg_dir"])
    return {
        "example_ct": (load_nifti(realct["example_ct"]), load_nifti(seg / "example_seg_fast_force_split.nii.gz", dtype=np.uint8)),
        "example_ct_sm": (load_nifti(realct["example_ct_sm"]), load_nifti(seg / "example_seg_fast.nii.gz", dtype=np.uint8)),
    }
