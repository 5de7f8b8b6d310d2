"""The viewer's copy of a volume: gzip-compressed raw little-endian int16 ``[k, j, i]``, written once."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from django.conf import settings

from inference.ml.atomic import atomic_path
from inference.ml.volume import load_nifti


def volume_cache_path(volume) -> Path:
    """Where the gzip-compressed raw little-endian int16 ``[k, j, i]`` copy of a volume is cached."""
    src = Path(volume.file.path)
    stamp = f"{src.stat().st_size}-{int(src.stat().st_mtime)}"
    return Path(settings.MEDIA_ROOT) / "viewer" / f"volume-{volume.pk}-{stamp}.i16.gz"


def ensure_volume_cache(volume) -> Path:
    """Write the cache once (atomically); later calls return the existing file."""
    path = volume_cache_path(volume)
    if path.exists():
        return path
    vol = load_nifti(volume.file.path)
    data = np.ascontiguousarray(vol.array, dtype="<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"volume-{volume.pk}-*.i16.gz"):  # copies of an older file of this volume
        if old != path:
            old.unlink(missing_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        gz.write(memoryview(data).cast("B"))
    return path
