"""NIfTI files as the second entry point (as in the original study): one file, one scan volume."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..geometry import LPS_TO_RAS
from ..volume import Volume
from .exclusion import MIN_SLICES


def is_nifti(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def nifti_stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    return name[:-7] if name.lower().endswith(".nii.gz") else name[:-4]


def load_nifti_entry(path: str | os.PathLike, *, min_slices: int = MIN_SLICES) -> Volume:
    """A 3D NIfTI file as an int16 HU Volume; raises ValueError with the reason when unusable."""
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"not a 3D volume (shape {img.shape})")
    if shape[2] < min_slices:
        raise ValueError(f"too short for 2.5D images: {shape[2]} slice(s), need at least {min_slices}")
    data = np.asanyarray(img.dataobj).reshape(shape)
    if not np.issubdtype(data.dtype, np.integer):
        data = np.rint(data)
    array = np.ascontiguousarray(np.clip(data, -32768, 32767).astype(np.int16).transpose(2, 1, 0))
    return Volume(array, LPS_TO_RAS @ img.affine)
