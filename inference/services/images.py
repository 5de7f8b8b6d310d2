"""2.5D images of stored scans from their boxes, stored as lossless float16 ``.npy`` under
MEDIA_ROOT/images25d/ with a PNG thumbnail and one Image25D row each.

Idempotent: a scan whose images were built from the same box versions and image settings is skipped.
A box that changes queues a rebuild of its scan (``inference.signals``, on ``annotations.signals.boxes_changed``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import no_progress
from adrenal_site.locking import lock
from adrenal_site.storage import discard_stored_on_error, local_path
from annotations.models import CropBox, Series
from inference.ml import atomic
from inference.ml.geometry import Box
from inference.ml.images25d import build_images, image_config, thumbnail_png
from inference.ml.volume import load_nifti

from ..models import Image25D

log = logging.getLogger(__name__)


def boxes_for(series, use_proposed: bool = False) -> dict:
    """``{"R": Box, "L": Box}`` of a scan: confirmed boxes (or any box when ``use_proposed``)."""
    out = {}
    for b in series.boxes.all():
        if b.status == "confirmed" or use_proposed:
            out[b.side] = (Box(tuple(b.lps_min), tuple(b.lps_max)), b)
    return out


def version_key(boxes: dict, image_cfg: dict) -> str:
    """What the images were built from: each box's id, version and corners, and the crop settings."""
    parts = {s: [b.pk, b.version, b.status, b.lps_min, b.lps_max] for s, (_, b) in sorted(boxes.items())}
    return hashlib.sha1(json.dumps([parts, image_cfg], sort_keys=True).encode()).hexdigest()[:40]


def _inputs(series, image_cfg: dict, use_proposed: bool) -> tuple[dict, dict, str]:
    """``(boxes, uncovered sides, version key)`` the scan's images are built from now."""
    boxes = boxes_for(series, use_proposed)
    uncovered = {s: n for s, n in (series.uncovered_sides or {}).items() if s not in boxes}
    return boxes, uncovered, version_key(boxes, {**image_cfg, **({"uncovered": sorted(uncovered)} if uncovered else {})})


def build_series(series, image_cfg: dict, use_proposed: bool = False) -> dict:
    """Build (or keep) one scan's images; returns ``{"series", "images", "built"|"skipped"|"error"}``.

    Each side needs a box, or its gland found outside the field of view (``Series.uncovered_sides``: a scan of
    one gland); an uncovered side's half of the joined image is blank. The images span the boxes' z range."""
    boxes, uncovered, key = _inputs(series, image_cfg, use_proposed)
    if not boxes or set(boxes) | set(uncovered) != {"R", "L"}:
        kind = "proposed or confirmed" if use_proposed else "confirmed"
        return {"series": series.pk, "error": f"needs {kind} boxes on both sides, or one side and the other "
                                              f"outside the field of view (has {sorted(boxes) or 'none'})"}
    if not hasattr(series, "volume"):
        return {"series": series.pk, "error": "no stored volume"}
    existing = list(Image25D.objects.filter(series=series))
    if existing and all(r.boxes_version == key and local_path(r.file.name).is_file() for r in existing):
        return {"series": series.pk, "images": len(existing), "skipped": True}
    volume = load_nifti(local_path(series.volume.file.name))
    images, z = build_images(volume, {s: b for s, (b, _) in boxes.items()}, image_cfg, blank_missing=bool(uncovered))
    name = f"images25d/{series.pk}/{key[:12]}"
    folder = local_path(name)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (img, zz) in enumerate(zip(images, z)):
        # atomically: another job of the same boxes may write this folder too while a fold reads it
        with atomic.atomic_path(folder / f"{n:04d}.npy") as tmp:
            np.save(tmp, img.astype(np.float16))
        with atomic.atomic_path(folder / f"{n:04d}.png") as tmp:
            thumbnail_png(img, tmp)
        rows.append(Image25D(series=series, slice_index=n, z_mm=float(zz), boxes_version=key,
                             file=f"{name}/{n:04d}.npy", thumbnail=f"{name}/{n:04d}.png"))
    # rows that cannot be written (the scan deleted meanwhile) take the new files with them, unless rows hold them
    written = [n for r in rows for n in (r.file.name, r.thumbnail.name)]
    held = [(Image25D.objects.all(), "file"), (Image25D.objects.all(), "thumbnail")]
    with discard_stored_on_error(*written, unless_used_by=held), transaction.atomic():
        lock(Series, series.pk)  # box saves take it too: the boxes cannot change between this check and the commit
        stale = _inputs(Series.objects.get(pk=series.pk), image_cfg, use_proposed)[2] != key
        if not stale:
            old_files = {Path(r.file.name).parent for r in Image25D.objects.filter(series=series)}
            Image25D.objects.filter(series=series).delete()
            Image25D.objects.bulk_create(rows)
    if stale:  # the boxes changed while this job built: the job their change queued builds (or built) theirs
        if not Image25D.objects.filter(file__startswith=f"{name}/").exists():
            shutil.rmtree(folder, ignore_errors=True)
        return {"series": series.pk, "error": "its boxes changed while its images were built; not stored (the "
                                              "rebuild the change queued makes them)"}
    for d in old_files - {Path(name)}:
        shutil.rmtree(local_path(d), ignore_errors=True)
    return {"series": series.pk, "images": len(rows), "built": True}


def build_many(series_qs, image: dict | None = None, use_proposed: bool = False,
               progress=no_progress) -> dict:
    """Build the 2.5D images of the scans in ``series_qs``; one bad scan never stops the rest."""
    cfg = image_config({"image": image or {}})
    items = list(series_qs.filter(is_scan=True).select_related("volume").prefetch_related("boxes").order_by("pk"))
    report = {"built": 0, "skipped": 0, "images": 0, "errors": []}
    for i, series in enumerate(items):
        progress(100.0 * i / max(len(items), 1), f"scan {i + 1}/{len(items)}")
        try:
            r = build_series(series, cfg, use_proposed)
        except Exception as exc:  # noqa: BLE001 - reported per scan
            log.exception("2.5D images of series %s", series.pk)
            r = {"series": series.pk, "error": f"{type(exc).__name__}: {exc}"}
        if "error" in r:
            report["errors"].append(r)
        else:
            report["built" if r.get("built") else "skipped"] += 1
            report["images"] += r["images"]
    progress(100.0, f"{report['built']} built, {report['skipped']} unchanged, {len(report['errors'])} errors")
    return report


def rebuild_after_box_change(series: Series) -> dict | None:
    """What to rebuild after a box of ``series`` changed: its images when it has some, or its first images
    once every side is confirmed (or outside the field of view) in a dataset whose images exist already (datasets never built stay
    untouched). Returns the images job's params, or None when nothing is to be done or one is queued."""
    if not getattr(settings, "ADRENAL_AUTO_REBUILD_IMAGES", True):
        return None
    has_images = Image25D.objects.filter(series=series).exists()
    rows = list(CropBox.objects.filter(series=series).values_list("side", "status"))
    uncovered = Series.objects.filter(pk=series.pk).values_list("uncovered_sides", flat=True).first() or {}
    confirmed = bool(rows) and all(st == CropBox.Status.CONFIRMED for _, st in rows) \
        and {side for side, _ in rows} | set(uncovered) >= {"R", "L"}
    if not has_images:
        dataset_id = series.study.patient.dataset_id
        if not (confirmed and Image25D.objects.filter(series__study__patient__dataset_id=dataset_id).exists()):
            return None
    queued = Job.objects.filter(kind="images25d", status=Job.Status.QUEUED).values_list("params", flat=True)
    if any((p or {}).get("series_ids") == [series.pk] for p in queued):
        return None
    return {"series_ids": [series.pk], "use_proposed": has_images and not confirmed}
