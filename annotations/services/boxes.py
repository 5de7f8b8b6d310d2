"""Saving crop boxes: millimetres in, voxel indices derived, versions checked and kept.

The one way to write a box. ``expected_version`` is the version the editor started from; a
mismatch raises ``VersionConflict`` (the API answers 409) so no concurrent update is lost.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import transaction
from django.utils import timezone

from inference.ml.geometry import Box, box_to_voxels

from ..models import CropBox, CropBoxVersion, Series
from ..signals import boxes_changed


class VersionConflict(Exception):
    def __init__(self, box: CropBox):
        super().__init__(f"box {box.series_id}/{box.side} is at version {box.version}")
        self.box = box


def _affine(series: Series):
    return np.asarray(series.volume.affine, float), series.volume.shape


def save_box(
    series: Series,
    side: str,
    lps_min: Sequence[float],
    lps_max: Sequence[float],
    *,
    status: str = CropBox.Status.PROPOSED,
    source: str = "ui",
    user=None,
    expected_version: int | None = None,
) -> CropBox:
    """Create or update the box of ``side`` on ``series`` and record the new version.

    ``expected_version`` None skips the check (jobs writing proposals); 0 means "I expect no box yet".
    A proposal never overwrites a confirmed box.
    """
    if side not in CropBox.Side.values:
        raise ValueError(f"side must be R or L, not {side!r}")
    box_mm = Box(tuple(lps_min), tuple(lps_max))
    affine, shape = _affine(series)
    vox_min, vox_max = box_to_voxels(affine, shape, box_mm)
    with transaction.atomic():
        box = CropBox.objects.select_for_update().filter(series=series, side=side).first()
        current = box.version if box else 0
        if expected_version is not None and expected_version != current:
            raise VersionConflict(box)
        if box is None:
            box = CropBox(series=series, side=side, version=0)
        elif expected_version is None and box.status == CropBox.Status.CONFIRMED and status == CropBox.Status.PROPOSED:
            return box
        box.lps_min, box.lps_max = list(box_mm.lps_min), list(box_mm.lps_max)
        box.voxel_min, box.voxel_max = vox_min, vox_max
        box.status, box.source, box.updated_by, box.updated_at = status, source, user, timezone.now()
        box.version += 1
        box.save()
        CropBoxVersion.objects.create(
            box=box, version=box.version, lps_min=box.lps_min, lps_max=box.lps_max, status=box.status,
            source=box.source, updated_by=user, updated_at=box.updated_at,
        )
        refresh_box_status(series)
    boxes_changed.send(sender=CropBox, series=series, box=box)
    return box


def refresh_box_status(series: Series) -> None:
    """Series.box_status from its boxes: confirmed when both sides are, proposed when any box exists."""
    statuses = set(series.boxes.values_list("status", flat=True))
    if series.box_status == Series.BoxStatus.NOT_COVERED and not statuses:
        return
    if statuses and statuses <= {CropBox.Status.CONFIRMED} and series.boxes.count() == 2:
        value = Series.BoxStatus.CONFIRMED
    elif statuses:
        value = Series.BoxStatus.PROPOSED
    else:
        value = Series.BoxStatus.NONE
    Series.objects.filter(pk=series.pk).update(box_status=value, box_status_reason="")
    series.box_status = value


def mark_not_covered(series: Series, reason: str) -> None:
    """Record that the field of view misses the adrenal region; proposed boxes are removed."""
    with transaction.atomic():
        series.boxes.filter(status=CropBox.Status.PROPOSED).delete()
        Series.objects.filter(pk=series.pk).update(box_status=Series.BoxStatus.NOT_COVERED, box_status_reason=reason[:300])
    series.box_status, series.box_status_reason = Series.BoxStatus.NOT_COVERED, reason[:300]
