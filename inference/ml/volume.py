"""A CT volume in Hounsfield units with its LPS affine, and its NIfTI storage (written atomically)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .geometry import LPS_TO_RAS, spacing_of


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
    """Read a NIfTI file into a Volume (array ``[k, j, i]``, LPS affine)."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), LPS_TO_RAS @ img.affine)
