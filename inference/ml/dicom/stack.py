"""Turning a series' frames into one regular-grid HU volume, or refusing with the reason.

Slices are sorted by position along the slice normal (row x column direction cosines). Policy:
- regular spacing (every step within 1 % or 0.01 mm of the median) and no tilt: stacked as they are;
- uneven spacing, or gaps up to ``MAX_GAP_FACTOR`` x the median step (a single missing slice): resampled
  by linear interpolation along the normal onto a regular grid at the median step (``resampled``);
- a larger gap (several consecutive slices missing), duplicate positions, mixed orientations or matrix
  sizes: refused with the reason;
- gantry tilt (slice origins drifting in-plane, more than 0.1 pixel over the series): every slice is shifted
  in-plane (linear) onto an orthogonal grid, uncovered voxels set to -1024 HU (``resampled``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry import affine_from_dicom
from ..volume import Volume
from .exclusion import MIN_SLICES, slice_normal
from .grouping import SeriesGroup
from .headers import Frame, InstanceHeader
from .pixels import DecodeError, read_frames, to_hu

MAX_GAP_FACTOR = 2.0
TILT_MAX_DRIFT_PX = 0.1
AIR_HU = -1024


class SeriesError(Exception):
    """A series that cannot become a correct volume; the message is the reason."""


@dataclass
class LoadedSeries:
    volume: Volume
    resampled: bool
    notes: str
    slice_spacing_mm: float
    tilt_deg: float


@dataclass
class _Slice:
    header: InstanceHeader
    index: int  # frame within the instance
    frame: Frame
    d: float  # position along the normal


def _check_geometry(group: SeriesGroup) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    first = group.first
    if first.orientation is None or first.pixel_spacing is None:
        raise SeriesError("missing ImageOrientationPatient or PixelSpacing: geometry unknown")
    o = np.asarray(first.orientation)
    for h in group.instances[1:]:
        if h.orientation is None or np.abs(np.asarray(h.orientation) - o).max() > 1e-3:
            raise SeriesError("mixed slice orientations in one series")
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise SeriesError(f"mixed matrix sizes in one series ({first.rows}x{first.columns} and {h.rows}x{h.columns})")
        if h.pixel_spacing is None or np.abs(np.asarray(h.pixel_spacing) - first.pixel_spacing).max() > 1e-3:
            raise SeriesError("mixed pixel spacings in one series")
    return o, first.pixel_spacing, (first.rows, first.columns)


def _slices(group: SeriesGroup, normal: np.ndarray) -> list[_Slice]:
    out = []
    for h in group.instances:
        for f, frame in enumerate(h.frames):
            if frame.position is None:
                raise SeriesError(f"no ImagePositionPatient for frame {f} of {h.path.name}")
            out.append(_Slice(h, f, frame, float(np.dot(frame.position, normal))))
    out.sort(key=lambda s: s.d)
    return out


def _decode_sorted(slices: list[_Slice], shape: tuple[int, int]) -> np.ndarray:
    """Decode every slice, in sorted order, into one int16 HU array ``[k, j, i]`` (one file open at a time)."""
    out = np.empty((len(slices), *shape), np.int16)
    cache_path, ds, arr = None, None, None
    for k, s in enumerate(slices):
        if s.header.path != cache_path:
            try:
                ds, arr = read_frames(s.header.path)
            except DecodeError as exc:
                raise SeriesError(f"{s.header.path.name}: {exc}") from exc
            cache_path = s.header.path
        if s.index >= arr.shape[0] or arr.shape[1:] != shape:
            raise SeriesError(f"{s.header.path.name}: pixel data shape {arr.shape} does not match the header")
        out[k] = to_hu(ds, arr[s.index], s.frame)
    return out


def load_series(group: SeriesGroup, *, min_slices: int = MIN_SLICES) -> LoadedSeries:
    """Decode ``group`` into a ``Volume`` (int16 HU ``[k, j, i]``, affine voxel -> LPS mm)."""
    orientation, spacing, shape = _check_geometry(group)
    normal = slice_normal(orientation)
    slices = _slices(group, normal)
    if len(slices) < min_slices:
        raise SeriesError(f"too short: {len(slices)} slice(s), need at least {min_slices}")
    d = np.array([s.d for s in slices])
    if len(slices) == 1:  # only reachable with min_slices=1: thickness stands in for the step
        step = float(group.first.meta.get("SliceThickness") or 1.0)
        stack = _decode_sorted(slices, shape)
        affine = affine_from_dicom(slices[0].frame.position, orientation, spacing, step * normal)
        return LoadedSeries(Volume(stack, affine), False, "single slice", step, 0.0)
    steps = np.diff(d)
    if (steps < 1e-3).any():
        k = int(np.argmax(steps < 1e-3))
        raise SeriesError(f"duplicate slice positions at {d[k]:.2f} mm along the normal (several acquisitions?)")
    step = float(np.median(steps))
    gaps = steps / step
    if gaps.max() > MAX_GAP_FACTOR * 1.01:
        k = int(np.argmax(gaps))
        raise SeriesError(
            f"missing slices: gap of {steps[k]:.2f} mm after slice {k} (median step {step:.2f} mm); "
            f"refused, gaps over {MAX_GAP_FACTOR:g}x the median are not interpolated"
        )
    uneven = bool((np.abs(steps - step) > max(0.01 * step, 0.01)).any())
    positions = np.array([s.frame.position for s in slices], float)
    row_dir, col_dir = orientation[:3], orientation[3:6]
    inplane = positions - positions[0] - np.outer(d - d[0], normal)
    drift_i = inplane @ row_dir / spacing[1]
    drift_j = inplane @ col_dir / spacing[0]
    tilted = bool(max(np.abs(drift_i).max(), np.abs(drift_j).max()) > TILT_MAX_DRIFT_PX)
    tilt_deg = math.degrees(math.atan2(float(np.linalg.norm(inplane[-1])), float(d[-1] - d[0])))
    stack = _decode_sorted(slices, shape)
    notes = []
    if not uneven and not tilted:
        slice_step = (d[-1] - d[0]) / (len(slices) - 1)
        affine = affine_from_dicom(positions[0], orientation, spacing, slice_step * normal)
        return LoadedSeries(Volume(stack, affine), False, "", float(slice_step), tilt_deg if tilted else 0.0)
    if tilted:
        notes.append(f"gantry tilt {tilt_deg:.1f} deg: slices shifted onto an orthogonal grid")
    if uneven:
        notes.append(
            f"uneven spacing (steps {steps.min():.2f}-{steps.max():.2f} mm): resampled to {step:.3f} mm"
        )
    count = int(round((d[-1] - d[0]) / step)) + 1

    from scipy import ndimage  # only needed here

    def aligned(m: int) -> np.ndarray:
        if not tilted:
            return stack[m].astype(np.float32)
        return ndimage.shift(stack[m].astype(np.float32), (drift_j[m], drift_i[m]), order=1, mode="constant",
                             cval=AIR_HU)

    out = np.empty((count, *shape), np.int16)
    cache: dict[int, np.ndarray] = {}
    for k in range(count):
        target = d[0] + k * step
        m = int(np.clip(np.searchsorted(d, target, side="right") - 1, 0, len(d) - 2))
        w = float(np.clip((target - d[m]) / (d[m + 1] - d[m]), 0.0, 1.0))
        for idx in (m, m + 1):
            if idx not in cache:
                cache[idx] = aligned(idx)
        for old in [i for i in cache if i < m]:
            del cache[old]
        values = cache[m] * (1 - w) + cache[m + 1] * w if w > 0 else cache[m]
        out[k] = np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    affine = affine_from_dicom(positions[0], orientation, spacing, step * normal)
    return LoadedSeries(Volume(out, affine), True, "; ".join(notes), step, tilt_deg if tilted else 0.0)
