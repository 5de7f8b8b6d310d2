"""A CT volume in Hounsfield units with its LPS affine, and its NIfTI storage (written atomically)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .geometry import LPS_TO_RAS, Box, box_to_voxels, canonical_index_map, spacing_of
from .limits import check_voxels


@dataclass
class Volume:
    """HU array indexed ``[k, j, i]`` and the affine mapping ``(i, j, k)`` to LPS mm."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """``[i, j, k]`` spacing in mm."""
        return spacing_of(self.affine)


def save_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write int16 HU NIfTI (.nii.gz) atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if volume.array.dtype == np.int16:  # already HU int16: no float copies (a 512x512x600 series is 315 MB)
        data = volume.array
    else:
        data = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    # [k, j, i] C-order is (i, j, k) Fortran order: the transpose is a view nibabel writes without a copy
    img = nib.Nifti1Image(np.asfortranarray(data.transpose(2, 1, 0)), LPS_TO_RAS @ volume.affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def load_nifti(path: str | os.PathLike, dtype=np.int16) -> Volume:
    """Read a NIfTI file into a Volume (array ``[k, j, i]``, LPS affine). Raises ``TooManyVoxels`` (a
    ValueError) before reading data when the header declares more voxels than the cap."""
    img = nib.load(str(path))
    check_voxels(img.shape, f"NIfTI {Path(path).name}")
    data = np.asanyarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), LPS_TO_RAS @ img.affine)


def to_canonical(volume: Volume) -> tuple[Volume, np.ndarray]:
    """The same voxels on the store's canonical axes (``geometry.canonical_index_map``: i -> L, j -> P, k -> S),
    by axis permutation and flips only (no interpolation, values untouched).

    Returns ``(volume, T)`` with ``T`` the integer 4x4 mapping canonical voxel indices to the input's
    (``input_ijk = T @ canonical_ijk``); ``T`` is the identity, and the input returned as is, when it already
    is canonical. Raises ValueError for a singular affine.
    """
    shape_ijk = volume.shape[::-1]
    t = canonical_index_map(volume.affine, shape_ijk)
    if np.array_equal(t, np.eye(4, dtype=int)):
        return volume, t
    data = volume.array.transpose(2, 1, 0)  # [i, j, k] view
    source_of = [int(np.flatnonzero(t[:3, w])[0]) for w in range(3)]
    data = data.transpose(source_of)
    flips = tuple(w for w in range(3) if t[source_of[w], w] < 0)
    if flips:
        data = np.flip(data, axis=flips)
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    return Volume(array, np.asarray(volume.affine, float) @ t), t


def load_nifti_region(path: str | os.PathLike, box: Box, margin_mm: float = 5.0, dtype=np.int16) -> Volume:
    """Only the voxels of a NIfTI file inside ``box`` (LPS mm) grown by ``margin_mm``: a Volume whose affine
    places the sub-block where it lies. An uncompressed ``.nii`` is memory-mapped (only those bytes are
    read); a ``.nii.gz`` is decompressed up to the block's last slice. Raises ValueError when the box misses
    the volume."""
    img = nib.load(str(path))
    affine = LPS_TO_RAS @ img.affine
    shape_kji = tuple(int(s) for s in img.shape[:3][::-1])
    lo, hi = box_to_voxels(affine, shape_kji, box.expanded(margin_mm))
    if any(h < l for l, h in zip(lo, hi)):
        raise ValueError(f"{path}: the box {box.to_dict()} lies outside the volume")
    check_voxels([h - l + 1 for l, h in zip(lo, hi)], f"region of {Path(path).name}")
    block = np.asanyarray(img.dataobj[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1])
    if dtype is not None:
        block = block.astype(dtype, copy=False)
    sub = affine.copy()
    sub[:3, 3] = affine[:3, :3] @ np.asarray(lo, float) + affine[:3, 3]
    return Volume(np.ascontiguousarray(block.transpose(2, 1, 0)), sub)
