"""Turning one pass's frames into one regular-grid HU volume on the store's canonical axes, or refusing with
the reason.

Slices are sorted by position along the slice normal (row x column direction cosines); the spacing policy
(regular, one missing slice, variable increment, uneven; duplicates and larger gaps refused) is
``spacing.plan_spacing``'s. Gantry tilt (slice origins drifting in-plane, more than 0.1 pixel over the series):
with regular table steps the slices form one sheared grid, resampled straight onto the store's LPS axes (one
linear interpolation, ``volume.to_store_grid``); otherwise every slice is shifted in-plane (linear) onto an
orthogonal grid first, one grown to hold every shifted slice whole, uncovered voxels set to -1024 HU
(``resampled``); origins that jump in-plane rather than drift in proportion to the table position (a field of
view recentred part-way) are shifted the same way, noted as such, with no tilt angle. Last, the volume is put on
the store's canonical axes (``volume.to_store_grid``: i -> L, j -> P, k -> S, by flips and permutation only), as
NIfTI imports are; a standard axial series is already there.
A grid whose axes are still oblique (a tilted gantry's slices, once made orthogonal, lie tilted about x) is
resampled onto LPS axes there (linear, noted with its angle, ``resampled``), so the store never holds an oblique
affine.
The pass's own note (how its series was split, odd instances excluded) leads the notes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from scipy import ndimage

from ..geometry import affine_from_dicom, unit_cosines
from ..limits import TooManyVoxels, check_voxels
from ..volume import OBLIQUE_TOLERANCE, Volume, obliquity, to_store_grid
from .exclusion import MIN_SLICES, geometry_problem, slice_normal
from .headers import Frame, InstanceHeader
from .pixels import PADDING_HU, DecodeError, implausible_hu, read_frames_padded, to_hu
from .series_group import SeriesGroup
from .spacing import DUPLICATE_MM, MAX_GAP_FACTOR, SeriesError, plan_spacing, position_rounding

__all__ = ["MAX_GAP_FACTOR", "LoadedSeries", "SeriesError", "load_series"]
TILT_MAX_DRIFT_PX = 0.1
TILT_LINEAR_PX = 0.5  # slice origins within this of a straight line along the normal: a gantry tilt
AIR_HU = -1024


@dataclass
class LoadedSeries:
    """``volume`` (int16 HU, canonical axes); ``resampled``: slices interpolated (spacing or tilt);
    ``notes``: the reasons, "; "-joined; ``spacing``: ``spacing.SpacingPlan.kind`` (or ``single``)."""

    volume: Volume
    resampled: bool
    notes: str
    slice_spacing_mm: float
    tilt_deg: float
    spacing: str = "regular"
    # images left out as copies of another at the same position with the same HU (``_drop_identical_copies``):
    # (dropped, kept) headers, for the import report
    copies: list[tuple[InstanceHeader, InstanceHeader]] = field(default_factory=list)


@dataclass
class _Slice:
    header: InstanceHeader
    index: int  # frame within the instance
    frame: Frame  # its position that of the pixel the series' grid puts first (see ``flip``)
    d: float  # position along the normal
    # (columns, rows) reversed against the series' first image: an image whose ImageOrientationPatient has the
    # row and/or column direction the other way round (-1\0\0\0\-1\0 in a 1\0\0\0\1\0 series): its
    # pixels are flipped onto the series' grid when decoded
    flip: tuple[bool, bool] = (False, False)


def _reversed_axes(orientation, reference: np.ndarray) -> tuple[bool, bool] | None:
    """``(columns, rows)`` reversed when ``orientation``'s row and column directions are ``reference``'s or their
    opposites (the same plane, pixels stored the other way round); None when they are other directions."""
    if orientation is None:
        return None
    o = np.asarray(orientation, float)
    out = []
    for own, ref in ((o[:3], reference[:3]), (o[3:6], reference[3:6])):
        if np.abs(own - ref).max() <= 1e-3:
            out.append(False)
        elif np.abs(own + ref).max() <= 1e-3:
            out.append(True)
        else:
            return None
    return out[0], out[1]


def _check_geometry(group: SeriesGroup) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    first = group.first
    if first.orientation is None or first.pixel_spacing is None:
        which = [name for name, v in (("ImageOrientationPatient", first.orientation),
                                      ("PixelSpacing", first.pixel_spacing)) if v is None]
        raise SeriesError(f"{' and '.join(which)} missing or not numbers: geometry unknown")
    problem = geometry_problem(first.orientation, first.pixel_spacing)
    if problem:
        raise SeriesError(problem)
    o = np.asarray(first.orientation)
    for h in group.instances[1:]:
        if _reversed_axes(h.orientation, o) is None:
            raise SeriesError("mixed slice orientations in one series")
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise SeriesError(f"mixed matrix sizes in one series ({first.rows}x{first.columns} and {h.rows}x{h.columns})")
        if h.pixel_spacing is None or np.abs(np.asarray(h.pixel_spacing) - first.pixel_spacing).max() > 1e-3:
            raise SeriesError("mixed pixel spacings in one series")
    return o, first.pixel_spacing, (first.rows, first.columns)


def _slices(group: SeriesGroup, orientation: np.ndarray, spacing: tuple[float, float],
            notes: list[str] | None = None) -> list[_Slice]:
    """Every frame of the pass, sorted along the normal of ``orientation`` (the first image's). A frame of an image
    stored with the row or column direction reversed is placed by the pixel the series' grid puts first (its
    last column and/or row), its pixels flipped when decoded; ``notes`` gets how many such images there were."""
    normal = slice_normal(orientation)
    out = []
    reversed_images = []
    for h in group.instances:
        flip = _reversed_axes(h.orientation, orientation) or (False, False)
        shift = np.zeros(3)
        if flip[0]:  # the series' first column is this image's last
            shift += unit_cosines(h.orientation[:3]) * spacing[1] * (h.columns - 1)
        if flip[1]:
            shift += unit_cosines(h.orientation[3:6]) * spacing[0] * (h.rows - 1)
        if any(flip):
            reversed_images.append(h)
        for f, frame in enumerate(h.frames):
            if frame.position is None:
                raise SeriesError(f"ImagePositionPatient missing or not numbers for frame {f} of {h.path.name}")
            if any(flip):
                frame = replace(frame, position=tuple(float(v) for v in np.asarray(frame.position) + shift))
            out.append(_Slice(h, f, frame, float(np.dot(frame.position, normal)), flip))
    out.sort(key=lambda s: s.d)
    if reversed_images and notes is not None:
        shown = "\\".join(f"{v + 0.0:g}" for v in reversed_images[0].orientation)  # + 0.0: no -0
        notes.append(f"{len(reversed_images)} image(s) stored with the row or column direction reversed "
                     f"(ImageOrientationPatient {shown}, e.g. {reversed_images[0].path.name}) flipped onto the "
                     "series' grid")
    return out


def _oriented(hu: np.ndarray, flip: tuple[bool, bool]) -> np.ndarray:
    """One frame's HU on the series' grid (``_Slice.flip``)."""
    if flip[0]:
        hu = hu[:, ::-1]
    if flip[1]:
        hu = hu[::-1, :]
    return hu


def _slice_hu(s: _Slice, shape: tuple[int, int]) -> np.ndarray:
    """One slice's HU (as ``_decode_sorted`` stores it)."""
    try:
        ds, arr, pad = read_frames_padded(s.header.path)
    except DecodeError as exc:
        raise SeriesError(f"{s.header.path.name}: {exc}") from exc
    if s.index >= arr.shape[0] or arr.shape[1:] != shape:
        raise SeriesError(f"{s.header.path.name}: pixel data shape {arr.shape} does not match the header")
    return _oriented(to_hu(ds, arr[s.index], s.frame, None if pad is None else pad[s.index])[0], s.flip)


def _drop_identical_copies(slices: list[_Slice], shape: tuple[int, int], notes: list[str]
                           ) -> tuple[list[_Slice], list[tuple[InstanceHeader, InstanceHeader]]]:
    """``slices`` (sorted along the normal) without the images that repeat another at the same position with the
    same HU (an image re-sent or re-exported under a new SOP Instance UID: nothing tells them apart, and nothing
    needs to); a note says how many. Images at one position that differ stay, for ``plan_spacing`` to refuse as
    duplicate positions. Only images sharing a position are decoded here, one position at a time."""
    out: list[_Slice] = []
    copies: list[tuple[_Slice, _Slice]] = []
    cache: dict[tuple, np.ndarray] = {}
    for s in slices:
        here = []
        for k in reversed(out):
            if s.d - k.d >= DUPLICATE_MM:
                break
            if np.abs(np.subtract(k.frame.position, s.frame.position)).max() < DUPLICATE_MM:
                here.append(k)
        if not here:
            cache.clear()  # a new position: the images decoded for the last one are not needed again
            out.append(s)
            continue
        for k in [s, *here]:
            if (k.header.path, k.index) not in cache:
                cache[(k.header.path, k.index)] = _slice_hu(k, shape)
        hu = cache[(s.header.path, s.index)]
        twin = next((k for k in here if np.array_equal(cache[(k.header.path, k.index)], hu)), None)
        if twin is None:
            out.append(s)
        else:
            copies.append((s, twin))
    if copies:
        shown = ", ".join(f"{a.header.path.name} = {b.header.path.name}" for a, b in copies[:3])
        notes.append(f"{len(copies)} image(s) left out as copies of another at the same position with the same HU "
                     f"({shown}{', ...' if len(copies) > 3 else ''})")
    return out, [(a.header, b.header) for a, b in copies]


def _check_size(shape: tuple[int, ...], what: str) -> None:
    """SeriesError (naming the shape and the cap) when an array of ``shape`` would exceed the voxel cap."""
    try:
        check_voxels(shape, what)
    except TooManyVoxels as exc:
        raise SeriesError(str(exc)) from None


def _decode_sorted(slices: list[_Slice], shape: tuple[int, int], notes: list[str]) -> np.ndarray:
    """Decode every slice, in sorted order, into one int16 HU array ``[k, j, i]`` (one file open at a time);
    pixel padding becomes air, with a note of how much there was."""
    out = np.empty((len(slices), *shape), np.int16)
    padded = 0
    cache_path, ds, arr, pad = None, None, None, None
    for k, s in enumerate(slices):
        if s.header.path != cache_path:
            try:
                ds, arr, pad = read_frames_padded(s.header.path)
            except DecodeError as exc:
                raise SeriesError(f"{s.header.path.name}: {exc}") from exc
            cache_path = s.header.path
        if s.index >= arr.shape[0] or arr.shape[1:] != shape:
            raise SeriesError(f"{s.header.path.name}: pixel data shape {arr.shape} does not match the header")
        hu, n = to_hu(ds, arr[s.index], s.frame, None if pad is None else pad[s.index])
        out[k] = _oriented(hu, s.flip)
        padded += n
    if padded:
        notes.append(f"{padded:,} padding pixel(s) (PixelPaddingValue) stored as {PADDING_HU} HU")
    return out


def _finish(group: SeriesGroup, volume: Volume, resampled: bool, notes: list[str], step: float, tilt: float,
            spacing: str) -> LoadedSeries:
    try:
        canonical, t, oblique_note = to_store_grid(volume)
    except TooManyVoxels as exc:
        raise SeriesError(str(exc)) from None
    if oblique_note:
        notes, resampled = notes + [oblique_note], True
    elif not np.array_equal(t, np.eye(4, dtype=int)):
        flipped = [a for a, w in zip("ijk", range(3)) if t[:3, w].sum() < 0]
        what = []
        if not np.array_equal(np.abs(t[:3, :3]), np.eye(3, dtype=int)):  # rows along y (ImageOrientationPatient)
            store_of = ["ijk"[int(np.flatnonzero(t[r, :3])[0])] for r in range(3)]
            what.append(f"axes permuted: the series' i, j, k are the store's {', '.join(store_of)}")
        if flipped:
            what.append("flipped " + ", ".join(flipped))
        notes = notes + [f"put on the store's LPS axes ({'; '.join(what)}; no interpolation)"]
    notes = group.notes + notes
    if group.pass_note:
        notes = [group.pass_note] + notes
    return LoadedSeries(canonical, resampled, "; ".join(notes), float(step), tilt, spacing)


def load_series(group: SeriesGroup, *, min_slices: int = MIN_SLICES) -> LoadedSeries:
    """Decode ``group`` (one pass) into a ``Volume`` (int16 HU ``[k, j, i]``, affine voxel -> LPS mm, canonical
    axes). Raises SeriesError with the reason: geometry unknown or mixed, too short, duplicate positions (images
    at one position that differ; a copy with the same HU is left out, noted and listed in ``copies``), missing
    slices, undecodable pixels, values that cannot be HU (``pixels.implausible_hu``)."""
    orientation, spacing, shape = _check_geometry(group)
    copy_notes: list[str] = []
    slices, copies = _drop_identical_copies(_slices(group, orientation, spacing, copy_notes), shape, copy_notes)
    loaded = _stack(group, slices, orientation, spacing, shape, min_slices)
    problem = implausible_hu(loaded.volume.array)
    if problem:
        f = group.first.frames[0] if group.first.frames else Frame(None)
        raise SeriesError(f"{problem}: a signed series labelled unsigned (PixelRepresentation 0), or a wrong "
                          f"RescaleSlope/RescaleIntercept? (first image: slope {f.slope:g}, intercept {f.intercept:g})")
    loaded.copies = copies
    if copy_notes:
        loaded.notes = "; ".join([loaded.notes, *copy_notes] if loaded.notes else copy_notes)
    return loaded


def _stack(group: SeriesGroup, slices: list[_Slice], orientation: np.ndarray, spacing: tuple[float, float],
           shape: tuple[int, int], min_slices: int) -> LoadedSeries:
    normal = slice_normal(orientation)
    if len(slices) < min_slices:
        raise SeriesError(f"too short: {len(slices)} slice(s), need at least {min_slices}")
    _check_size((len(slices), *shape), "DICOM series (slices x Rows x Columns)")
    d = np.array([s.d for s in slices])
    if len(slices) == 1:  # only reachable with min_slices=1: thickness stands in for the step
        step = float(group.first.meta.get("SliceThickness") or 1.0)
        decode_notes = ["single slice"]
        stack = _decode_sorted(slices, shape, decode_notes)
        affine = affine_from_dicom(slices[0].frame.position, orientation, spacing, step * normal)
        return _finish(group, Volume(stack, affine), False, decode_notes, step, 0.0, "single")
    positions = np.array([s.frame.position for s in slices], float)
    written = np.array([s.header.frames[s.index].position for s in slices], float)  # as the headers write them
    plan = plan_spacing(d, position_rounding(written, normal))
    row_dir, col_dir = unit_cosines(orientation[:3]), unit_cosines(orientation[3:6])
    inplane = positions - positions[0] - np.outer(d - d[0], normal)
    drift_i = inplane @ row_dir / spacing[1]
    drift_j = inplane @ col_dir / spacing[0]
    tilted = bool(max(np.abs(drift_i).max(), np.abs(drift_j).max()) > TILT_MAX_DRIFT_PX)
    # a gantry tilt moves the slice origins in-plane in proportion to their distance along the normal; origins
    # that jump (the field of view recentred part-way) are no tilt, and no tilt angle is recorded for them
    span = d - d[0]
    per_mm = inplane.T @ span / float(span @ span)
    rest = inplane - np.outer(span, per_mm)
    off_line = max(np.abs(rest @ row_dir).max() / spacing[1], np.abs(rest @ col_dir).max() / spacing[0])
    linear = off_line <= TILT_LINEAR_PX
    tilt_deg = math.degrees(math.atan(float(np.linalg.norm(per_mm)))) if tilted and linear else 0.0
    decode_notes: list[str] = []
    stack = _decode_sorted(slices, shape, decode_notes)
    if not plan.resample and not tilted:
        affine = affine_from_dicom(positions[0], orientation, spacing, plan.step * normal)
        return _finish(group, Volume(stack, affine), False, [*plan.notes, *decode_notes], plan.step, 0.0,
                       plan.kind)
    if tilted and not plan.resample:
        # regular table steps: the slices are one sheared grid (slice m at positions[0] + m * table step); the
        # store's LPS grid is resampled from it in one interpolation (``_finish``), covering every slice whole
        table_step = (positions[-1] - positions[0]) / (len(d) - 1)
        sheared = affine_from_dicom(positions[0], orientation, spacing, table_step)
        off = positions - positions[0] - np.outer(np.arange(len(d)), table_step)
        if (max(np.abs(off @ row_dir).max() / spacing[1], np.abs(off @ col_dir).max() / spacing[0]) <= TILT_MAX_DRIFT_PX
                and obliquity(sheared) > OBLIQUE_TOLERANCE):
            notes = [f"gantry tilt {tilt_deg:.1f} deg: the sheared slice grid", *plan.notes, *decode_notes]
            return _finish(group, Volume(stack, sheared), True, notes, float(np.linalg.norm(table_step)), tilt_deg,
                           plan.kind)
    notes = []
    if tilted and linear:
        notes.append(f"gantry tilt {tilt_deg:.1f} deg: slices shifted onto an orthogonal grid covering them all")
    elif tilted:
        moved = float(np.linalg.norm(inplane, axis=1).max())
        notes.append(f"slice origins move in-plane by up to {moved:.1f} mm, not in proportion to the table "
                     "position (a field of view recentred within the series; no gantry tilt): slices shifted onto "
                     "one grid covering them all")
    notes.extend(plan.notes)
    notes.extend(decode_notes)
    step = plan.step if plan.resample else float((d[-1] - d[0]) / (len(d) - 1))
    count = int(round((d[-1] - d[0]) / step)) + 1
    # the in-plane grid: the first slice's, grown to hold every shifted slice whole (drifts in pixels)
    lo = [min(0, math.floor(float(drift.min()) + 1e-6)) if tilted else 0 for drift in (drift_j, drift_i)]
    hi = [max(0, math.ceil(float(drift.max()) - 1e-6)) if tilted else 0 for drift in (drift_j, drift_i)]
    grid = (shape[0] + hi[0] - lo[0], shape[1] + hi[1] - lo[1])
    _check_size((count, *grid), f"DICOM series resampled at {step:g} mm (slices x Rows x Columns)")

    def aligned(m: int) -> np.ndarray:
        if not tilted:
            return stack[m].astype(np.float32)
        canvas = np.full(grid, AIR_HU, np.float32)
        canvas[-lo[0]:-lo[0] + shape[0], -lo[1]:-lo[1] + shape[1]] = stack[m]
        return ndimage.shift(canvas, (drift_j[m], drift_i[m]), order=1, mode="constant", cval=AIR_HU)

    out = np.empty((count, *grid), np.int16)
    cache: dict[int, np.ndarray] = {}
    for k in range(count):
        target = d[0] + k * step  # the true position of output slice k along the normal
        m = int(np.clip(np.searchsorted(d, target, side="right") - 1, 0, len(d) - 2))
        w = float(np.clip((target - d[m]) / (d[m + 1] - d[m]), 0.0, 1.0))
        for idx in (m, m + 1):
            if idx not in cache:
                cache[idx] = aligned(idx)
        for old in [i for i in cache if i < m]:
            del cache[old]
        values = cache[m] * (1 - w) + cache[m + 1] * w if w > 0 else cache[m]
        out[k] = np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    origin = positions[0] + lo[1] * spacing[1] * row_dir + lo[0] * spacing[0] * col_dir
    affine = affine_from_dicom(origin, orientation, spacing, step * normal)
    return _finish(group, Volume(out, affine), True, notes, step, tilt_deg, plan.kind)
