"""Saving crop boxes: millimetres in, checked against the volume, voxel indices derived, versions kept.

The one way to write a box. ``expected_version`` is the version the editor started from; a mismatch raises
``VersionConflict`` (the API answers 409) so no concurrent update is lost. A box that is not a box of this
volume (min > max, not meeting the volume, a side longer than ``max_side_mm()``) raises ``BoxInvalid`` naming
the field (the API answers 400; a crop-table row is reported as failed).

History: every save is a ``CropBoxVersion``. Edits and confirmations make new *states*; ``undo_box`` restores
the state an edit was made from, ``redo_box`` the newest edit made from the current state, ``restore_box`` any
version, each saved as a new version (nothing is ever deleted), so undo and redo walk the whole history.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from adrenal_site.locking import lock
from inference.ml.geometry import Box, box_to_voxels, volume_extent

from ..models import CropBox, CropBoxVersion, Series
from ..signals import boxes_changed

MAX_BOX_SIDE_MM = 200.0  # default for ``settings.ADRENAL_MAX_BOX_SIDE_MM``; glands with lesions fit well inside
AXES = "xyz"


class VersionConflict(Exception):
    """The record (a box or a side's findings) is no longer at the version the editor started from."""

    def __init__(self, record):
        where = f"{record.series_id}/{record.side} is at version {record.version}" if record else "absent"
        super().__init__(f"{type(record).__name__ if record else 'record'} {where}")
        self.record = record
        self.box = record  # the name the box API has always used


class BoxInvalid(ValueError):
    """A box that cannot be stored; ``field`` names the offending input (``lps_min``, ``lps_max``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _is_number(v) -> bool:
    """A real number: int, float or a numpy number, never a bool, a string or a container."""
    return isinstance(v, (numbers.Real, np.number)) and not isinstance(v, (bool, np.bool_))


def _check_version(field: str, value) -> None:
    """A version is a whole number >= 0 (``True`` is not 1, ``5.9`` is not 5); ``BoxInvalid`` otherwise."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise BoxInvalid(field, f"expected a whole number >= 0, not {value!r}"[:200])


ABSURD_SIDE_MM = 2000.0  # longer than any body: such a side is a wrong number, refused before clipping


def max_side_mm() -> float:
    """The longest side a box may have, mm (``settings.ADRENAL_MAX_BOX_SIDE_MM``, default 200)."""
    return float(getattr(settings, "ADRENAL_MAX_BOX_SIDE_MM", MAX_BOX_SIDE_MM))


def check_box(series: Series, lps_min: Sequence[float], lps_max: Sequence[float]) -> Box:
    """The box ``[x, y, z]`` mm (LPS) if it can be a box of ``series``' volume, else ``BoxInvalid``.

    Checks: three finite numbers each; min <= max on every axis; no side over ``ABSURD_SIDE_MM`` (a wrong
    number); the box meets the volume (its voxel cells, i.e. the voxel centres' extent widened by half a voxel).
    The box returned is clipped to those cells (a box drawn past the first or last slice holds only what was
    scanned), and each of its sides so clipped is at most ``max_side_mm()``: a box dragged past a short slab's
    end is judged by its part inside."""
    lo, hi = [], []
    for name, values, out in (("lps_min", lps_min, lo), ("lps_max", lps_max, hi)):
        if isinstance(values, (str, bytes, dict)) or not isinstance(values, (Sequence, np.ndarray)):
            raise BoxInvalid(name, f"expected a list [x, y, z] of numbers in mm, not {type(values).__name__}")
        if len(values) != 3:
            raise BoxInvalid(name, f"expected three numbers [x, y, z] in mm, got {len(values)}")
        for v in values:
            if not _is_number(v):
                raise BoxInvalid(name, f"expected numbers [x, y, z] in mm, not {type(v).__name__} {v!r}"[:200])
            try:
                out.append(float(v))
            except OverflowError:
                out.append(float("inf"))
        if not all(np.isfinite(out)):
            raise BoxInvalid(name, "expected three finite numbers [x, y, z] in mm")
    for a in range(3):
        if lo[a] > hi[a]:
            raise BoxInvalid("lps_max", f"{AXES[a]} max {hi[a]:g} is below {AXES[a]} min {lo[a]:g}")
    limit = max_side_mm()
    for a in range(3):  # numbers no drawing on a body gives are refused, not clipped to the scan
        if hi[a] - lo[a] > max(limit, ABSURD_SIDE_MM):
            side = hi[a] - lo[a]  # 1e300 mm read as 301 digits with .1f: in powers of ten past a kilometre
            shown = f"{side:.1f}" if side < 1e6 else f"{side:.3g}"
            raise BoxInvalid("lps_max", f"the {AXES[a]} side is {shown} mm; sides are at most {limit:g} mm")
    affine = np.asarray(series.volume.affine, float)
    extent = volume_extent(affine, series.volume.shape).expanded(np.abs(affine[:3, :3]) @ np.full(3, 0.5))
    for a in range(3):
        if hi[a] < extent.lps_min[a] or lo[a] > extent.lps_max[a]:
            raise BoxInvalid("lps_min", f"the box does not meet the volume: its {AXES[a]} range {lo[a]:g}..{hi[a]:g} mm "
                                        f"is outside the volume's {extent.lps_min[a]:.1f}..{extent.lps_max[a]:.1f} mm")
    # what lies outside the scanned volume is cut off, as proposed boxes are: a box holds what the scan holds
    lo = [max(v, float(e)) for v, e in zip(lo, extent.lps_min)]
    hi = [min(v, float(e)) for v, e in zip(hi, extent.lps_max)]
    for a in range(3):  # measured on what the scan holds: a box dragged past a short slab's end is its part inside
        if hi[a] - lo[a] > limit:
            raise BoxInvalid("lps_max", f"the {AXES[a]} side is {hi[a] - lo[a]:.1f} mm within the scan; sides are at "
                                        f"most {limit:g} mm")
    return Box(tuple(lo), tuple(hi))


SIDE_NAMES = {"R": "right", "L": "left"}  # the sides as messages name them (the one table)


def same_corners(box: CropBox, other: Box, tol_mm: float = 1e-3) -> bool:
    """Whether stored ``box`` has ``other``'s corners (mm, within ``tol_mm``)."""
    return bool(box.lps_min and box.lps_max and np.allclose(box.lps_min, other.lps_min, atol=tol_mm)
                and np.allclose(box.lps_max, other.lps_max, atol=tol_mm))


def _check_box_side(series: Series, side: str, box: Box) -> None:
    """A box for ``side`` drawn over the other gland's box (each one's centre inside the other) is refused: the
    reader had the other side selected (the viewer opens on R), and a box stored on the wrong side would train
    and judge the wrong gland. Glands lie 60 mm or more apart, so two boxes of one scan never sit on each other."""
    other = CropBox.objects.filter(series=series, side="L" if side == "R" else "R").first()
    if other is None or not other.lps_min or not other.lps_max:
        return
    theirs = Box(tuple(other.lps_min), tuple(other.lps_max))
    if theirs.contains(np.asarray([box.centre]))[0] and box.contains(np.asarray([theirs.centre]))[0]:
        raise BoxInvalid("lps_min", f"the box lies on the {other.side} ({SIDE_NAMES[other.side]}) gland's box: it was "
                                    f"not stored as the {SIDE_NAMES[side]} box; select {other.side} "
                                    f"(key {other.side.lower()}) to change that box, or draw this one on the "
                                    f"{SIDE_NAMES[side]} gland")


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
    action: str | None = None,
    restored_from: int | None = None,
    confidence: float | None = None,
    note: str = "",
) -> CropBox:
    """Create or update the box of ``side`` on ``series`` and record the new version.

    ``lps_min``/``lps_max``: ``[x, y, z]`` mm, LPS (checked by ``check_box``: ``BoxInvalid``). ``expected_version``
    None skips the check (jobs writing proposals); 0 means "I expect no box yet"; a mismatch raises
    ``VersionConflict``. A proposal never overwrites a confirmed box. ``action`` (default ``confirm`` when the status
    becomes confirmed, else ``edit``) and ``restored_from`` (undo, redo, restore: the version copied) are recorded
    on the version for the history. ``confidence`` (0-1) and ``note`` are the proposer's, for proposals (None and
    "" for a box a person drew). A box saved on a side the proposer found outside the field of view
    (``Series.uncovered_sides``) takes that side off the list."""
    if side not in CropBox.Side.values:
        raise ValueError(f"side must be R or L, not {side!r}")
    _check_version("version", expected_version)
    _check_version("restore", restored_from)
    box_mm = check_box(series, lps_min, lps_max)
    affine, shape = np.asarray(series.volume.affine, float), series.volume.shape
    vox_min, vox_max = box_to_voxels(affine, shape, box_mm)
    with transaction.atomic():
        lock(Series, series.pk)  # the first box of a side has no row to lock: two first saves at once wait here
        box = CropBox.objects.select_for_update().filter(series=series, side=side).first()
        current = box.version if box else 0
        if expected_version is not None and expected_version != current:
            raise VersionConflict(box)
        if box is None:
            box = CropBox(series=series, side=side, version=0)
        elif expected_version is None and box.status == CropBox.Status.CONFIRMED and status == CropBox.Status.PROPOSED:
            return box
        if box.pk is None or not same_corners(box, box_mm):  # drawn or moved now
            _check_box_side(series, side, box_mm)
        current_state = _state_of(box) if box.pk else None
        was_confirmed = box.pk is not None and box.status == CropBox.Status.CONFIRMED
        box.lps_min, box.lps_max = list(box_mm.lps_min), list(box_mm.lps_max)
        box.voxel_min, box.voxel_max = vox_min, vox_max
        box.status, box.source, box.updated_by, box.updated_at = status, source, user, timezone.now()
        box.confidence, box.note = confidence, (note or "")[:300]
        box.version += 1
        box.save()
        if restored_from is not None:
            copied = CropBoxVersion.objects.get(box=box, version=restored_from)
            state, parent = copied.state or copied.version, None
            action = action or CropBoxVersion.Action.RESTORE
        else:
            state, parent = box.version, current_state
            if action is None:
                action = (CropBoxVersion.Action.CONFIRM if status == CropBox.Status.CONFIRMED and not was_confirmed
                          else CropBoxVersion.Action.EDIT)
        CropBoxVersion.objects.create(
            box=box, version=box.version, lps_min=box.lps_min, lps_max=box.lps_max, status=box.status,
            source=box.source, confidence=box.confidence, note=box.note, updated_by=user, updated_at=box.updated_at,
            action=action, state=state, parent_state=parent, restored_from=restored_from,
        )
        uncovered = Series.objects.filter(pk=series.pk).values_list("uncovered_sides", flat=True).first() or {}
        if side in uncovered:
            uncovered = {s: n for s, n in uncovered.items() if s != side}
            Series.objects.filter(pk=series.pk).update(uncovered_sides=uncovered)
            series.uncovered_sides = uncovered
        refresh_box_status(series)
    boxes_changed.send(sender=CropBox, series=series, box=box)
    return box


def _state_of(box: CropBox) -> int | None:
    row = CropBoxVersion.objects.filter(box=box, version=box.version).values_list("state", flat=True).first()
    return row or box.version


@dataclass(frozen=True)
class Steps:
    """Where undo and redo would go from a box's current version: the version to copy, or None."""

    undo: int | None
    redo: int | None


def steps(box: CropBox | None) -> Steps:
    """The versions undo and redo would restore (None when there is nothing to undo or redo)."""
    if box is None:
        return Steps(None, None)
    rows = list(CropBoxVersion.objects.filter(box=box).values("version", "state", "parent_state", "action"))
    by_version = {r["version"]: r for r in rows}
    cur = by_version.get(box.version)
    if cur is None:
        return Steps(None, None)
    state = cur["state"] or cur["version"]
    edit = by_version.get(state, cur)
    undo = edit["parent_state"]
    children = [r["version"] for r in rows if r["parent_state"] == state and (r["state"] or r["version"]) == r["version"]]
    return Steps(undo if undo in by_version else None, max(children) if children else None)


def restore_box(series: Series, side: str, version: int, *, user=None, expected_version: int,
                action: str = CropBoxVersion.Action.RESTORE) -> CropBox:
    """Save the box as it was at ``version`` (its coordinates, status and source) as a new version.
    ``LookupError`` when the box or that version does not exist; ``VersionConflict`` as ``save_box``."""
    _check_version("restore", version)
    _check_version("version", expected_version)
    box = CropBox.objects.filter(series=series, side=side).first()
    old = CropBoxVersion.objects.filter(box=box, version=version).first() if box else None
    if old is None:
        raise LookupError(f"the {side} box has no version {version}")
    return save_box(series, side, old.lps_min, old.lps_max, status=old.status, source=old.source, user=user,
                    expected_version=expected_version, action=action, restored_from=version,
                    confidence=old.confidence, note=old.note)


def undo_box(series: Series, side: str, *, user=None, expected_version: int) -> CropBox:
    """Go back to the state the current one was made from. ``LookupError`` when there is nothing to undo."""
    _check_version("version", expected_version)
    box = CropBox.objects.filter(series=series, side=side).first()
    if box is not None and box.version != expected_version:
        raise VersionConflict(box)
    target = steps(box).undo
    if target is None:
        raise LookupError("Nothing to undo: this is the box's first state.")
    return restore_box(series, side, target, user=user, expected_version=expected_version,
                       action=CropBoxVersion.Action.UNDO)


def redo_box(series: Series, side: str, *, user=None, expected_version: int) -> CropBox:
    """Go forward to the newest edit made from the current state. ``LookupError`` when there is nothing to redo."""
    _check_version("version", expected_version)
    box = CropBox.objects.filter(series=series, side=side).first()
    if box is not None and box.version != expected_version:
        raise VersionConflict(box)
    target = steps(box).redo
    if target is None:
        raise LookupError("Nothing to redo.")
    return restore_box(series, side, target, user=user, expected_version=expected_version,
                       action=CropBoxVersion.Action.REDO)


FACES = {("x", "min"): "right", ("x", "max"): "left", ("y", "min"): "anterior", ("y", "max"): "posterior",
         ("z", "min"): "inferior", ("z", "max"): "superior"}
TOWARDS = {"x": ("R", "L"), "y": ("A", "P"), "z": ("I", "S")}  # direction of a decrease, of an increase


def describe_change(before: dict | None, after: dict) -> str:
    """What changed from one version to the next, in words a reader uses: ``"moved L 3.0 mm; superior face
    S 6.0 mm"``, ``"proposed → confirmed"``, ``"created (landmarks)"``. ``before``/``after``: dicts with
    ``lps_min``, ``lps_max``, ``status``, ``source``, ``action``, ``restored_from``."""
    parts = []
    if after.get("action") in ("undo", "redo", "restore"):
        parts.append(f"{after['action']} → v{after['restored_from']}")
    if before is None:
        parts.append(f"created ({after['source']})")
        return "; ".join(parts)
    for a, axis in enumerate(AXES):
        d_lo = after["lps_min"][a] - before["lps_min"][a]
        d_hi = after["lps_max"][a] - before["lps_max"][a]
        if abs(d_lo) < 0.05 and abs(d_hi) < 0.05:
            continue
        if abs(d_lo - d_hi) < 0.05:
            parts.append(f"moved {TOWARDS[axis][d_lo > 0]} {abs(d_lo):.1f} mm")
            continue
        for d, end in ((d_lo, "min"), (d_hi, "max")):
            if abs(d) >= 0.05:
                parts.append(f"{FACES[axis, end]} face {TOWARDS[axis][d > 0]} {abs(d):.1f} mm")
    if before["status"] != after["status"]:
        parts.append(f"{before['status']} → {after['status']}")
    return "; ".join(parts) or "no change"


def box_history(box: CropBox) -> list[dict]:
    """Every version of ``box``, newest first: version, coordinates (mm), status, source, action, state, who,
    when and ``change`` (``describe_change`` against the version before it)."""
    rows = list(box.versions.select_related("updated_by").order_by("version"))
    out, before = [], None
    for v in rows:
        item = {"version": v.version, "lps_min": v.lps_min, "lps_max": v.lps_max, "status": v.status,
                "source": v.source, "action": v.action, "state": v.state or v.version,
                "restored_from": v.restored_from, "updated_by": v.updated_by.username if v.updated_by else None,
                "updated_at": v.updated_at.isoformat()}
        item["change"] = describe_change(before, item)
        out.append(item)
        before = item
    return out[::-1]


def refresh_box_status(series: Series) -> None:
    """Series.box_status from its boxes: confirmed when every box is and each side has a box or lies outside
    the field of view (``uncovered_sides``: a scan of one gland is confirmed with that gland's box), proposed
    when any box exists."""
    rows = list(series.boxes.values_list("side", "status"))
    statuses = {st for _, st in rows}
    if series.box_status == Series.BoxStatus.NOT_COVERED and not statuses:
        return
    uncovered = Series.objects.filter(pk=series.pk).values_list("uncovered_sides", flat=True).first() or {}
    settled = {side for side, _ in rows} | set(uncovered)
    if statuses and statuses <= {CropBox.Status.CONFIRMED} and settled >= {"R", "L"}:
        value = Series.BoxStatus.CONFIRMED
    elif statuses:
        value = Series.BoxStatus.PROPOSED
    else:
        value = Series.BoxStatus.NONE
    Series.objects.filter(pk=series.pk).update(box_status=value, box_status_reason="")
    series.box_status = value


def set_uncovered_sides(series: Series, notes: dict[str, str]) -> None:
    """Record the sides whose gland the proposer found outside the field of view, ``{"L": what is missing}``
    (a side that has a box is never listed), and refresh the scan's box status."""
    have = set(series.boxes.values_list("side", flat=True))
    notes = {s: str(n)[:300] for s, n in notes.items() if s in CropBox.Side.values and s not in have}
    Series.objects.filter(pk=series.pk).update(uncovered_sides=notes)
    series.uncovered_sides = notes
    refresh_box_status(series)


def mark_not_covered(series: Series, reason: str) -> None:
    """Record that the field of view misses the adrenal region; proposed boxes are removed."""
    with transaction.atomic():
        series.boxes.filter(status=CropBox.Status.PROPOSED).delete()
        Series.objects.filter(pk=series.pk).update(box_status=Series.BoxStatus.NOT_COVERED, box_status_reason=reason[:300])
    series.box_status, series.box_status_reason = Series.BoxStatus.NOT_COVERED, reason[:300]
