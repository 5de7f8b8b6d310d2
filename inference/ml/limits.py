"""The one cap on how many voxels a reader or an image builder may allocate, checked from the header's
dimensions before any array exists (a 510 KB ``.nii.gz`` that declares 1024x1024x256 is refused at once
instead of costing 1.7 GB).

Every reader uses :func:`check_voxels`: NIfTI (``dicom/nifti.py``, ``volume.py``), DICOM stacking (Rows x
Columns x frames x slices, ``dicom/stack.py``, ``dicom/pixels.py``) and the 2.5D image builders
(``images25d.py``). The cap is ``ADRENAL_MAX_VOXELS`` from the environment (default 200 million: a
512x512 series of 760 slices, 400 MB as int16 HU), read at each call so tests and deployments can set it.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
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


MAX_NIFTI_EXTENSION_BYTES = 16 * 1024**2


class ExtensionsTooLarge(ValueError):
    """A NIfTI's header extensions hold more than a reader should take into memory; the message says how much."""


def check_nifti_extensions(path, limit: int = MAX_NIFTI_EXTENSION_BYTES) -> int:
    """The bytes of a single-file NIfTI's header extensions (0 without), walked from their own headers without
    reading their contents, or :class:`ExtensionsTooLarge` when they exceed ``limit`` or one declares a size nibabel
    would read to the end of the file with (under 8). nibabel reads every extension whole while loading the header
    (each to its declared ``esize``, whatever ``vox_offset`` says), so a 1 MB ``.nii.gz`` declaring a 1 GB
    extension of zeros cost 1.2 GB before its dimensions could be checked."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        first = fh.read(4)
        if len(first) < 4:
            return 0
        for order in "<>":
            size = struct.unpack(order + "i", first)[0]
            if size in (348, 540):
                break
        else:
            return 0  # not a NIfTI header: the reader says so
        head = first + fh.read(size - 4 + 4)
        if len(head) < size + 4 or head[size] == 0:
            return 0  # no extensions (or a header cut short: the reader says so)
        if size == 348:
            magic, offset = head[344:348], struct.unpack(order + "f", head[108:112])[0]
        else:
            magic, offset = head[4:12], struct.unpack(order + "q", head[168:176])[0]
        if not magic.startswith((b"n+1", b"n+2")):
            return 0  # a .hdr/.img pair: not a single file
        remaining = int(offset) - (size + 4) if math.isfinite(offset) else 0
        total = 0
        while remaining >= 16:
            ext = fh.read(8)
            if len(ext) < 8:
                break
            esize = struct.unpack(order + "i", ext[:4])[0]
            if esize < 8:
                raise ExtensionsTooLarge(f"NIfTI header extension of declared size {esize} (at least 8): malformed")
            total += esize
            if total > limit:
                raise ExtensionsTooLarge(f"NIfTI header extensions of more than {total / 1024**2:.0f} MB before the image "
                                     f"data (limit {limit / 1024**2:.0f} MB); refused before reading them")
            fh.seek(esize - 8, 1)
            remaining -= esize
    return total
