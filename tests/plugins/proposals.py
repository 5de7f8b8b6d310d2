"""Fixtures of the proposals area: scans stored directly as Dataset/Patient/Study/Series/Volume rows with a
NIfTI written by ``save_nifti`` (no importer needed), and resampled/shifted copies of the real CTs."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.ml.geometry import voxel_to_lps
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


# --- a small synthetic phantom for cohort coverage ------------------------------------------------------------
# Anatomy drawn in LPS mm around random landmarks: an elliptic body (fat rim, soft tissue), a vertebral body
# posterior in the midline, two lungs whose bases dome down to their lowest point posteriorly (right and left
# bases at different heights), anterior bowel gas below the diaphragm, and each adrenal gland as a union of
# three thin ellipsoids (body and two limbs) at a random place in the ranges reported for adults: centre 25-50
# mm from the midline, -15..+10 mm antero-posterior from the front of the vertebral body, 25 mm below to 5 mm
# above the lung base of its side. Abnormal patients carry a round lesion (radius 5-15 mm) next to one gland.
# Ground truth is the rasterised voxel masks, like TotalSegmentator masks of a real scan.


def make_phantom(seed: int, *, abnormal: bool = False, chest_only: bool = False, spacing=(3.0, 3.0, 4.0),
                 matrix: int = 120) -> tuple[Volume, dict[str, np.ndarray]]:
    """A synthetic CT and its truth masks ``{"R", "L", "lesion"}`` (boolean ``[k, j, i]``)."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = spacing
    cx, cy = rng.uniform(-25, 25), rng.uniform(-200, -120)  # body centre, LPS
    half_w, half_d = rng.uniform(130, 170), rng.uniform(95, 125)
    spine = (cx + rng.uniform(-5, 5), cy + half_d - rng.uniform(40, 50))  # vertebral body centre
    spine_r = rng.uniform(16, 22)
    y_front = spine[1] - spine_r
    base = {"R": rng.uniform(-20, 20)}
    base["L"] = base["R"] + rng.uniform(-5, 20)
    top = max(base.values()) + (5.0 if chest_only else rng.uniform(40, 90))
    bottom = min(base.values()) - rng.uniform(80, 140) if not chest_only else min(base.values()) - 150
    if chest_only:
        bottom, top = min(base.values()) + 5.0, min(base.values()) + 160
    n_k = int((top - bottom) / sz) + 1
    affine = np.array([[-sx, 0, 0, cx + sx * matrix / 2 + rng.uniform(-9, 9)], [0, -sy, 0, cy + sy * matrix / 2],
                       [0, 0, sz, bottom], [0, 0, 0, 1.0]])
    k, j, i = np.meshgrid(np.arange(n_k), np.arange(matrix), np.arange(matrix), indexing="ij")
    x = affine[0, 0] * i + affine[0, 3]
    y = affine[1, 1] * j + affine[1, 3]
    z = affine[2, 2] * k + affine[2, 3]
    hu = np.full(x.shape, -1000.0)
    body = ((x - cx) / half_w) ** 2 + ((y - cy) / half_d) ** 2 <= 1
    hu[body] = -100.0  # fat
    inner = ((x - cx) / (half_w - 15)) ** 2 + ((y - cy) / (half_d - 15)) ** 2 <= 1
    hu[inner] = 40.0
    for side, sign in (("R", -1), ("L", 1)):
        lx, ly = cx + sign * 0.45 * half_w, cy + 0.1 * half_d
        in_plane = ((x - lx) / (0.3 * half_w)) ** 2 + ((y - ly) / (0.55 * half_d)) ** 2 <= 1  # chest wall >= 2 cm
        posterior = np.clip((y - (ly - 0.55 * half_d)) / (1.1 * half_d), 0, 1)  # 0 anterior .. 1 posterior
        lung = in_plane & (z >= base[side] + 45 * (1 - posterior))
        hu[lung] = -830.0
    for _ in range(4):  # bowel gas: anterior, below the diaphragm
        gx, gy, gz = cx + rng.uniform(-80, 80), cy - rng.uniform(20, 70), min(base.values()) - rng.uniform(20, 120)
        hu[((x - gx) ** 2 + (y - gy) ** 2 + (z - gz) ** 2) <= rng.uniform(12, 25) ** 2] = -1000.0
    hu[((x - spine[0]) ** 2 + (y - spine[1]) ** 2) <= spine_r ** 2] = 600.0
    truth: dict[str, np.ndarray] = {}
    centres = {}
    for side, sign in (("R", -1), ("L", 1)):
        gc = np.array([spine[0] + sign * rng.uniform(25, 50), y_front + rng.uniform(-15, 10),
                       base[side] + rng.uniform(-25, 5)])
        centres[side] = gc
        mask = np.zeros(x.shape, bool)
        for offset, radii in (((0, 0, 0), (5, 9, 14)), ((sign * 6, 6, -10), (4, 4, 12)), ((-sign * 4, 8, -8), (4, 4, 11))):
            c = gc + np.asarray(offset, float)
            mask |= ((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 + ((z - c[2]) / radii[2]) ** 2 <= 1
        hu[mask] = 30.0
        truth[side] = mask
    truth["lesion"] = np.zeros(x.shape, bool)
    if abnormal:
        side = "R" if rng.random() < 0.5 else "L"
        c = centres[side] + rng.uniform(-8, 8, 3)
        r = rng.uniform(5, 15)
        truth["lesion"] = ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) <= r ** 2
        hu[truth["lesion"]] = 15.0
    hu += rng.normal(0, 12, hu.shape)
    return Volume(hu.astype(np.int16), affine), truth


# --- cut copies and voxel truth for the atlas proposer's tests ------------------------------------------------


def crop(volume: Volume, k=slice(None), j=slice(None), i=slice(None)) -> Volume:
    """The sub-volume ``array[k, j, i]`` (plain slices, step 1) with its affine moved to match."""
    sl = tuple(slice(*s.indices(n)[:2]) for s, n in zip((k, j, i), volume.shape))
    shift = np.eye(4)
    shift[:3, 3] = [sl[2].start, sl[1].start, sl[0].start]
    return Volume(np.ascontiguousarray(volume.array[sl]), volume.affine @ shift)


def flipped(volume: Volume, axes_kji: tuple[int, ...]) -> Volume:
    """The same anatomy stored with the given array axes reversed (the affine follows)."""
    a, aff = volume.array, np.asarray(volume.affine, float).copy()
    for ax in axes_kji:
        a = np.flip(a, ax)
        col, n = 2 - ax, volume.shape[ax]
        f = np.eye(4)
        f[col, col], f[col, 3] = -1.0, n - 1
        aff = aff @ f
    return Volume(np.ascontiguousarray(a), aff)


def permuted(volume: Volume, order_kji: tuple[int, int, int]) -> Volume:
    """The same anatomy stored with array axes permuted: new axis n is old axis ``order_kji[n]``."""
    aff = np.eye(4)
    for n, o in enumerate(order_kji):
        aff[:3, 2 - n] = volume.affine[:3, 2 - o]
    aff[:3, 3] = volume.affine[:3, 3]
    return Volume(np.ascontiguousarray(np.transpose(volume.array, order_kji)), aff)


def moved(volume: Volume, shift_mm) -> Volume:
    """The volume with its origin (and so its anatomy) moved by ``shift_mm`` (LPS) on the table."""
    aff = np.asarray(volume.affine, float).copy()
    aff[:3, 3] += np.asarray(shift_mm, float)
    return Volume(volume.array, aff)


def mask_points(affine: np.ndarray, mask_kji: np.ndarray) -> np.ndarray:
    """LPS mm of the voxel centres of a boolean ``[k, j, i]`` mask."""
    return voxel_to_lps(affine, np.argwhere(mask_kji)[:, ::-1])


def synthetic_truth(scan, side: str, k=slice(None), j=slice(None), i=slice(None)) -> np.ndarray:
    """LPS points of a synthetic patient's gland and lesion voxels of ``side`` inside the crop ``[k, j, i]``."""
    parts = [scan.masks[n] for n in (f"gland_{side}", f"lesion_{side}") if n in scan.masks]
    if not parts:
        return np.empty((0, 3))
    m = np.logical_or.reduce(parts)
    sub = np.zeros_like(m)
    sub[k, j, i] = m[k, j, i]
    return mask_points(scan.volume.affine, sub)
