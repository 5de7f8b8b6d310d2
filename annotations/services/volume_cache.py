"""The viewer's copies of a volume, written once: gzip-compressed raw little-endian int16.

- **Slabs** (what the viewer loads): the ``[k, j, i]`` array cut along ``k`` into slabs of ``slab_slices(shape)``
  slices (about 4 MB raw each), one gzip file per slab under ``MEDIA_ROOT/viewer/volume-<pk>-<stamp>/`` plus a
  ``manifest.json`` written last. They are prepared at import (the ``prepare_viewer`` job, ``annotations.tasks``),
  so the first image of a never-opened scan needs one small slab, and the rest streams in nearest the boxes
  first. A volume never prepared is prepared on its first slab request (one process at a time, file lock).
- **Whole volume** (``/api/series/<id>/volume/data/``, for API clients): one gzip file, made on first request.

``<stamp>`` is the stored NIfTI's size and mtime, so a rewritten volume gets fresh copies and old ones are
removed.
"""
from __future__ import annotations

import fcntl
import gzip
import json
import shutil
import time
from pathlib import Path

import numpy as np

from adrenal_site.storage import discard_stored, local_path, storage_name
from annotations.models import Volume
from inference.ml.atomic import atomic_path
from inference.ml.volume import load_nifti

SLAB_BYTES = 4 << 20  # raw bytes per slab: a 512x512 series has 8 slices per slab
MANIFEST = "manifest.json"


def _stamp(volume) -> str:
    st = Path(volume.file.path).stat()
    return f"{st.st_size}-{int(st.st_mtime)}"


def volume_cache_path(volume) -> Path:
    """Where the gzip-compressed raw little-endian int16 ``[k, j, i]`` copy of a volume is cached."""
    return local_path(f"viewer/volume-{volume.pk}-{_stamp(volume)}.i16.gz")


def ensure_volume_cache(volume) -> Path:
    """Write the whole-volume copy once (atomically); later calls return the existing file."""
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


# ------------------------------------------------------------------------------------------------ slabs

def slab_slices(shape_kji) -> int:
    """Slices per slab for a ``[k, j, i]`` shape: about ``SLAB_BYTES`` of raw int16, at least one slice."""
    _, nj, ni = (int(s) for s in shape_kji)
    return max(1, SLAB_BYTES // (2 * nj * ni))


def slab_plan(volume) -> dict:
    """How the viewer fetches a volume: ``{"slices": per slab, "count": slabs, "stamp"}``."""
    per = slab_slices(volume.shape)
    return {"slices": per, "count": -(-int(volume.shape[0]) // per), "stamp": _stamp(volume)}


def slab_dir(volume) -> Path:
    return local_path(f"viewer/volume-{volume.pk}-{_stamp(volume)}")


def slab_path(volume, n: int) -> Path:
    return slab_dir(volume) / f"slab-{n:04d}.i16.gz"


def viewer_data_ready(volume) -> bool:
    """Whether the slabs of ``volume`` are prepared (their manifest is written last)."""
    return (slab_dir(volume) / MANIFEST).exists()


def prepare_viewer_data(volume, *, compresslevel: int = 1) -> dict:
    """Write the slabs of ``volume`` (idempotent: prepared slabs are kept) and return the manifest
    ``{"shape": [k, j, i], "slices", "count", "bytes": [compressed size per slab], "seconds"}``.

    Concurrent callers wait for each other on a lock file; older copies of this volume are removed."""
    folder = slab_dir(volume)
    manifest = folder / MANIFEST
    if manifest.exists():
        return json.loads(manifest.read_text())
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"volume-{volume.pk}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if manifest.exists():  # prepared while this caller waited
                return json.loads(manifest.read_text())
            t0 = time.perf_counter()
            for old in root.glob(f"volume-{volume.pk}-*"):
                if old.is_dir() and old != folder:
                    shutil.rmtree(old, ignore_errors=True)
            data = np.ascontiguousarray(load_nifti(volume.file.path).array, dtype="<i2")
            per = slab_slices(data.shape)
            folder.mkdir(parents=True, exist_ok=True)
            sizes = []
            for n, k0 in enumerate(range(0, data.shape[0], per)):
                path = slab_path(volume, n)
                with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
                        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                    gz.write(memoryview(np.ascontiguousarray(data[k0:k0 + per])).cast("B"))
                sizes.append(path.stat().st_size)
            doc = {"shape": list(data.shape), "slices": per, "count": len(sizes), "bytes": sizes,
                   "seconds": round(time.perf_counter() - t0, 3)}
            with atomic_path(manifest) as tmp:
                Path(tmp).write_text(json.dumps(doc))
            return doc
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_slab(volume, n: int) -> Path:
    """The path of slab ``n`` (``IndexError`` outside the plan), preparing the slabs first if needed."""
    plan = slab_plan(volume)
    if not 0 <= n < plan["count"]:
        raise IndexError(f"slab {n} is outside 0..{plan['count'] - 1}")
    if not viewer_data_ready(volume):
        prepare_viewer_data(volume)
    return slab_path(volume, n)


def discard_volume_files(volume_pk: int, name: str) -> None:
    """Remove a deleted volume's stored NIfTI ``name`` (unless another volume row holds it) and every viewer copy
    of it (slabs, the whole-volume file, its lock file)."""
    discard_stored(name, unless_used_by=[(Volume.objects.all(), "file")])
    root = local_path("viewer")
    if root.is_dir():
        for old in [*root.glob(f"volume-{volume_pk}-*"), root / f"volume-{volume_pk}.lock"]:
            discard_stored(storage_name(old))
