"""The one cap on how many voxels a reader or an image builder may allocate, checked from the header's
dimensions before any array exists (a 510 KB ``.nii.gz`` that declares 1024x1024x256 is refused at once
instead of costing 1.7 GB).

Every reader uses :func:`check_voxels`: NIfTI (``dicom/nifti.py``, ``volume.py``), DICOM stacking (Rows x
Columns x frames x slices, ``dicom/stack.py``, ``dicom/pixels.py``) and the 2.5D image builders
(``images25d.py``). The cap is ``ADRENAL_MAX_VOXELS`` from the environment (default 200 million: a
512x512 series of 760 slices, 400 MB as int16 HU), read at each call so tests and deployments can set it.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable

DEFAULT_MAX_VOXELS = 200_000_000


class TooManyVoxels(ValueError):
    """An array would exceed the voxel cap; the message names what, its shape and the cap."""


def max_voxels() -> int:
    """The cap, voxels (``ADRENAL_MAX_VOXELS``, default 200 million)."""
    raw = os.environ.get("ADRENAL_MAX_VOXELS", "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_MAX_VOXELS
    except ValueError:
        value = DEFAULT_MAX_VOXELS
    return value if value > 0 else DEFAULT_MAX_VOXELS


def check_voxels(shape: Iterable[int], what: str = "volume", limit: int | None = None) -> int:
    """The voxel count of ``shape`` (any number of dimensions), or TooManyVoxels when it exceeds ``limit``
    (default :func:`max_voxels`) or a dimension is negative. Call it with the header's dimensions before
    allocating or decoding."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise TooManyVoxels(f"{what}: negative dimension in shape {tuple(dims)}")
    count = math.prod(dims)
    cap = max_voxels() if limit is None else int(limit)
    if count > cap:
        raise TooManyVoxels(
            f"{what} of shape {' x '.join(str(d) for d in dims)} is {count:,} voxels, over the limit of {cap:,} "
            f"(ADRENAL_MAX_VOXELS); refused before reading its data")
    return count
