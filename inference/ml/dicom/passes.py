"""One SeriesInstanceUID, several passes: splitting a series into the volumes it holds, and setting its odd
instances aside, before any volume is built.

Scanners and PACS put more than one pass under one SeriesInstanceUID: contrast phases (AcquisitionNumber 1, 2,
each a full sweep), reconstructions of one acquisition (soft-tissue and bone kernel, thin and thick), a stray
localizer or a reformatted image. Stacked by position they give a volume that looks regular but alternates
between passes (vtk-dicom #220, Slicer #4801). As 3D Slicer's scalar-volume plugin (sub-series by
AcquisitionNumber, ImageType, ImageOrientationPatient) and dcm2niix (repeated positions are separate volumes)
do, a series is split by what tells its passes apart, in this order:

1. **Instance kind** — image type (modality, SOP class, the first three ImageType values), orientation, matrix
   size, pixel spacing. A part of fewer than ``MIN_SLICES`` images beside a part with enough is a set of *odd
   instances*: each is excluded with its reason (``SeriesGroup.excluded``) and the rest of the series goes on.
2. **Reconstruction** — ConvolutionKernel, SliceThickness: always separate passes.
3. **Acquisition** — AcquisitionNumber, TemporalPositionIdentifier, ContrastBolusAgent, ContrastBolusStartTime,
   ContrastBolusRoute, ContrastBolusVolume: separate passes only when their slice positions overlap (interleave
   or repeat). Values on disjoint stretches of the table (a step-and-shoot scan numbering each rotation, one
   acquisition number per slice) are pieces of one sweep and stay together.
4. **Geometry** — positions that no single regular grid explains but that are two to four regular grids
   with one common period, each of at least ``MIN_SLICES`` slices, overlapping over at least half the shorter
   one (two phases offset by a fraction of a step, a thin and a thick reconstruction with no kernel tag):
   one pass per grid. Piecewise increments (fine slices, then 5 mm ones) do not overlap and are not split.

Each pass becomes its own group with key ``<series key>#<label>``, the label built from the values that tell it
apart (``acq2``, ``kernel-B70f``, ``z-30.60``), so re-imports find the same keys; its ``pass_note`` says how the
series was split. A series that holds one pass keeps its own key (odd instances excluded or not). What cannot
form a volume is refused later, per pass, with the pass named (``SeriesGroup.describe``).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from .exclusion import MIN_SLICES, exclusion_reason, slice_normal
from .headers import InstanceHeader
from .series_group import SeriesGroup
from .spacing import position_rounding, rounded_grid_step

MAX_KEY_LENGTH = 128  # Series.series_uid
MAX_INTERLEAVED = 4  # at most this many grids are told apart by geometry alone
MIN_OVERLAP = 0.5  # interleaved grids share at least this fraction of the shorter grid's extent


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "\\".join(_text(v) for v in value)
    return "" if value is None else str(value).strip()


def _number(value, digits: int = 3) -> str:
    try:
        return f"{round(float(value), digits):g}"
    except (TypeError, ValueError):
        return _text(value)


def plane_name(orientation) -> str:
    """``axial``, ``coronal``, ``sagittal`` or ``oblique`` (no axis within 37 degrees of the slice normal)."""
    if orientation is None:
        return "unknown"
    n = np.abs(slice_normal(orientation))
    axis = int(np.argmax(n))
    return ("sagittal", "coronal", "axial")[axis] if n[axis] >= 0.8 else "oblique"


def plane_key(orientation) -> tuple[float, ...] | None:
    """The image plane of ``orientation`` whichever way its rows and columns run: each direction turned to point
    along the positive patient axis it is nearest (``-1\\0\\0\\0\\-1\\0`` and ``1\\0\\0\\0\\1\\0`` are one
    plane; ``stack.load_series`` flips the pixels of the other), rounded to 3 decimals."""
    if orientation is None:
        return None
    out = []
    for v in (np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)):
        v = v if v[int(np.argmax(np.abs(v)))] >= 0 else -v
        out.extend(round(float(c), 3) + 0.0 for c in v)  # + 0.0: no -0.0
    return tuple(out)


@dataclass(frozen=True)
class Attribute:
    """One header attribute that can tell passes apart: how a note names it, its value per instance, the
    label piece of a value, and its kind (``instance``, ``reconstruction`` or ``acquisition``, see above)."""

    name: str
    kind: str
    value: Callable[[InstanceHeader], object]
    label: Callable[[object], str]
    shown: Callable[[object], str] = _text


def _meta(keyword: str, number: bool = False) -> Callable[[InstanceHeader], object]:
    def get(h: InstanceHeader) -> object:
        v = h.meta.get(keyword)
        return _number(v) if number and v not in (None, "") else _text(v)
    return get


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("image type", "instance", lambda h: (h.modality, h.sop_class, h.image_type[:3]),
              lambda v: "-".join(v[2]).lower() or (v[0] or "none").lower(),
              lambda v: "\\".join(v[2]) or v[0] or "none"),
    Attribute("orientation", "instance", lambda h: plane_key(h.orientation), lambda v: plane_name(v),
              lambda v: plane_name(v)),
    Attribute("matrix size", "instance", lambda h: (h.rows, h.columns), lambda v: f"{v[0]}x{v[1]}",
              lambda v: f"{v[0]}x{v[1]}"),
    Attribute("pixel spacing", "instance",
              lambda h: None if h.pixel_spacing is None else tuple(round(c, 3) for c in h.pixel_spacing),
              lambda v: "px" + ("x".join(f"{c:g}" for c in v) if v else "none"),
              lambda v: ("x".join(f"{c:g}" for c in v) + " mm") if v else "none"),
    Attribute("ConvolutionKernel", "reconstruction", _meta("ConvolutionKernel"), lambda v: f"kernel-{v or 'none'}"),
    Attribute("SliceThickness", "reconstruction", _meta("SliceThickness", number=True),
              lambda v: f"{v}mm" if v else "thk-none", lambda v: f"{v} mm" if v else "none"),
    Attribute("AcquisitionNumber", "acquisition", _meta("AcquisitionNumber", number=True),
              lambda v: f"acq{v or '-none'}"),
    Attribute("TemporalPositionIdentifier", "acquisition", _meta("TemporalPositionIdentifier", number=True),
              lambda v: f"temporal{v or '-none'}"),
    Attribute("ContrastBolusAgent", "acquisition", _meta("ContrastBolusAgent"), lambda v: f"contrast-{v or 'none'}"),
    Attribute("ContrastBolusStartTime", "acquisition", _meta("ContrastBolusStartTime"),
              lambda v: f"bolus-{v or 'none'}"),
    Attribute("ContrastBolusRoute", "acquisition", _meta("ContrastBolusRoute"), lambda v: f"route-{v or 'none'}"),
    Attribute("ContrastBolusVolume", "acquisition", _meta("ContrastBolusVolume", number=True),
              lambda v: f"bolus{v}ml" if v else "bolus-none"),
)
GEOMETRY = "interleaved slice positions"


@dataclass
class _Part:
    instances: list[InstanceHeader]
    labels: list[str] = field(default_factory=list)
    split_by: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(len(h.frames) for h in self.instances)


def _sanitize(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", label)[:60]


def _buckets(instances: list[InstanceHeader], attr: Attribute) -> list[tuple[object, list[InstanceHeader]]]:
    found: dict[object, list[InstanceHeader]] = {}
    for h in instances:
        found.setdefault(attr.value(h), []).append(h)
    return sorted(found.items(), key=lambda kv: str(kv[0]))


def _labels(attr: Attribute, values: list[object]) -> list[str]:
    """Label pieces for the values of one attribute; values that would share a label get a short hash."""
    labels = [_sanitize(attr.label(v)) for v in values]
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:
            labels[i] = f"{lab}~{hashlib.sha1(repr(values[i]).encode()).hexdigest()[:6]}"
    return labels


def _positions(instances: Iterable[InstanceHeader]) -> np.ndarray | None:
    """Frame positions along the slice normal (mm), or None when any orientation or position is unknown."""
    instances = list(instances)
    if not instances or instances[0].orientation is None:
        return None
    normal = slice_normal(instances[0].orientation)
    out = []
    for h in instances:
        for frame in h.frames:
            if frame.position is None:
                return None
            out.append(float(np.dot(frame.position, normal)))
    return np.sort(np.asarray(out))


def _overlapping(groups: list[list[InstanceHeader]]) -> bool:
    """Whether any two groups cover the same stretch of the table: the shorter one's range lies at least
    ``MIN_OVERLAP`` within the other's (a single position: inside it). Blocks that only touch are one sweep."""
    spans = []
    for g in groups:
        d = _positions(g)
        if d is None:
            return False
        spans.append((float(d[0]), float(d[-1])))
    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            (lo_a, hi_a), (lo_b, hi_b) = spans[a], spans[b]
            shorter = min(hi_a - lo_a, hi_b - lo_b)
            shared = min(hi_a, hi_b) - max(lo_a, lo_b)
            if shorter < 0.01:
                if shared >= -0.01:
                    return True
            elif shared >= MIN_OVERLAP * shorter:
                return True
    return False


def _tol(step: float) -> float:
    return max(0.01 * abs(step), 0.02)


def _is_regular(d: np.ndarray) -> bool:
    steps = np.diff(d)
    if len(steps) == 0:
        return True
    m = float(np.median(steps))
    return m > 0.01 and bool(np.all(np.abs(steps - m) <= _tol(m)))


def interleaved_grids(d: np.ndarray, min_slices: int = MIN_SLICES, rounding: float | None = None
                      ) -> list[np.ndarray] | None:
    """Index sets of ``d`` (sorted positions, mm) that are 2..``MAX_INTERLEAVED`` overlapping regular grids
    sharing one period, each of at least ``min_slices``, that are not one regular grid where they overlap; None
    when ``d`` is one grid (regular, jittered, gapped, piecewise, or regular written to 0.1 mm:
    ``spacing.rounded_grid_step`` with ``rounding``), has repeated positions, or no such decomposition
    exists."""
    d = np.asarray(d, float)
    n = len(d)
    if n < 2 * min_slices or _is_regular(d) or (np.diff(d) < 1e-3).any():
        return None
    if rounded_grid_step(d, rounding) is not None:  # one grid written to 0.1 mm
        return None
    for c in range(1, MAX_INTERLEAVED + 1):
        if n <= c:
            break
        period = float(np.median(d[c:] - d[:-c]))
        if period <= 0.05:
            continue
        tol = _tol(period)
        residue = np.mod(d - d[0], period)
        residue[residue > period - tol] -= period
        order = np.argsort(residue, kind="stable")
        classes: list[list[int]] = []
        last = None
        for idx in order:
            if last is None or residue[idx] - last > tol:
                classes.append([])
            classes[-1].append(int(idx))
            last = residue[idx]
        if not 2 <= len(classes) <= MAX_INTERLEAVED:
            continue
        grids = [np.sort(np.asarray(cl)) for cl in classes]
        if any(len(g) < min_slices or not _is_regular(d[g]) for g in grids):
            continue
        lo = max(d[g[0]] for g in grids)
        hi = min(d[g[-1]] for g in grids)
        if _is_regular(d[(d >= lo - tol) & (d <= hi + tol)]):
            continue  # together one regular grid where they overlap: one pass with a variable increment
        ok = True
        for a in range(len(grids)):
            for b in range(a + 1, len(grids)):
                ga, gb = d[grids[a]], d[grids[b]]
                shared = min(ga[-1], gb[-1]) - max(ga[0], gb[0])
                shorter = min(ga[-1] - ga[0], gb[-1] - gb[0])
                if shared < MIN_OVERLAP * shorter:
                    ok = False
        if ok:
            return sorted(grids, key=lambda g: d[g[0]])
    return None


def _blocks_cut_across(grids: list[list[InstanceHeader]]) -> bool:
    """Whether the grids cut across the blocks an acquisition attribute marks: the part holds two or more values
    of it (kept together, as they lie on disjoint stretches of the table) and a value's images fall in more than
    one grid. A step-and-shoot scan numbers each gantry rotation; a table increment a little over or under the
    detector's coverage (4 x 2.5 mm rows, 10.5 mm steps) makes each detector row a regular grid, so the grids are
    the rows of one sweep, not passes (phases interleaved each keep their own blocks)."""
    for attr in ATTRIBUTES:
        if attr.kind != "acquisition":
            continue
        grids_of: dict[object, set[int]] = {}
        for g, headers in enumerate(grids):
            for h in headers:
                grids_of.setdefault(attr.value(h), set()).add(g)
        if len(grids_of) >= 2 and any(len(found) > 1 for found in grids_of.values()):
            return True
    return False


def _split_geometry(part: _Part, min_slices: int) -> list[_Part]:
    if any(len(h.frames) != 1 for h in part.instances):  # frames of one file cannot go to different passes
        return [part]
    d_of = _positions(part.instances[:1])
    if d_of is None:
        return [part]
    normal = slice_normal(part.instances[0].orientation)
    pairs = []
    for h in part.instances:
        if h.frames[0].position is None:
            return [part]
        pairs.append((float(np.dot(h.frames[0].position, normal)), h))
    pairs.sort(key=lambda p: p[0])
    d = np.asarray([p[0] for p in pairs])
    rounding = position_rounding(np.asarray([h.frames[0].position for _, h in pairs], float), normal)
    grids = interleaved_grids(d, min_slices, rounding)
    if grids is None or _blocks_cut_across([[pairs[i][1] for i in g] for g in grids]):
        return [part]
    return [_Part([pairs[i][1] for i in g], part.labels + [_sanitize(f"z{d[g[0]]:.2f}")], part.split_by + [GEOMETRY])
            for g in grids]


def _differences(h: InstanceHeader, ref: InstanceHeader) -> str:
    parts = []
    for attr in ATTRIBUTES:
        if attr.kind != "instance":
            continue
        a, b = attr.value(h), attr.value(ref)
        if a != b:
            parts.append(f"{attr.name} {attr.shown(a)} (series: {attr.shown(b)})")
    return ", ".join(parts)


def _odd_short(h: InstanceHeader, ref: InstanceHeader) -> str:
    names = [a.name for a in ATTRIBUTES if a.kind == "instance" and a.value(h) != a.value(ref)]
    return f"{h.path.name} ({', '.join(names)})"


def _odd_reason(h: InstanceHeader, ref: InstanceHeader, kept: int, group: SeriesGroup) -> str:
    single = SeriesGroup(group.key, group.uid_source, group.study_key, group.study_uid_source, group.folder, [h])
    what = exclusion_reason(single, min_slices=1)
    why = _differences(h, ref)
    text = f"odd instance {h.path.name} excluded: {why}"
    if what:
        text += f"; {what}"
    return f"{text}; the series' other {kept} images go on without it"  # (imported if the rest is usable)


def _summary(parts: list[_Part]) -> str:
    """What tells the passes apart, e.g. ``AcquisitionNumber 1/2``."""
    out = []
    for attr in ATTRIBUTES:  # every attribute uniform within each pass and different between them
        per_part = [{attr.value(h) for h in p.instances} for p in parts]
        values = list(dict.fromkeys(next(iter(v)) for v in per_part if len(v) == 1))
        if all(len(v) == 1 for v in per_part) and len(values) > 1:
            out.append(f"{attr.name} {'/'.join(attr.shown(v) for v in values)}")
    if any(GEOMETRY in p.split_by for p in parts):
        firsts = []
        for p in parts:
            d = _positions(p.instances)
            firsts.append("?" if d is None else f"{d[0]:.2f}")
        out.append(f"{GEOMETRY} (grids from {', '.join(firsts)} mm)")
    return "; ".join(out)


def pass_key(series_key: str, label: str) -> str:
    """The stable key of one pass: ``<series key>#<label>``, the label hashed when the key would be too long."""
    key = f"{series_key}#{label}"
    if len(key) > MAX_KEY_LENGTH:
        key = f"{series_key}#{hashlib.sha1(label.encode()).hexdigest()[:16]}"
    return key[:MAX_KEY_LENGTH]


def split_passes(group: SeriesGroup, min_slices: int = MIN_SLICES) -> list[SeriesGroup]:
    """The passes of one series (see the module docstring), each a ``SeriesGroup``; ``[group]`` itself when it
    holds one pass and no odd instance. Odd instances are listed in ``excluded`` of the first pass that can
    form a volume, with their reasons; ``duplicates`` go with the pass holding the kept copy."""
    parts = [_Part(list(group.instances))]
    excluded: list[tuple[InstanceHeader, str]] = []
    short: list[str] = []
    for stage in ("instance", "reconstruction", "acquisition", "geometry"):
        if stage == "geometry":
            parts = [q for p in parts for q in _split_geometry(p, min_slices)]
            continue
        for attr in ATTRIBUTES:
            if attr.kind != stage:
                continue
            new: list[_Part] = []
            for part in parts:
                buckets = _buckets(part.instances, attr)
                if len(buckets) == 1 or (stage == "acquisition" and not _overlapping([b for _, b in buckets])):
                    new.append(part)
                    continue
                labels = _labels(attr, [v for v, _ in buckets])
                new.extend(_Part(b, part.labels + [lab], part.split_by + [attr.name])
                           for lab, (_, b) in zip(labels, buckets))
            parts = new
        if stage == "instance" and len(parts) > 1:
            main = [p for p in parts if p.frames >= min_slices]
            if main:
                ref = max(main, key=lambda p: p.frames)
                for p in parts:
                    if p.frames < min_slices:
                        excluded.extend((h, _odd_reason(h, ref.instances[0], ref.frames, group)) for h in p.instances)
                        short.extend(_odd_short(h, ref.instances[0]) for h in p.instances)
                parts = [p for p in parts if p.frames >= min_slices]
    if len(parts) == 1 and not excluded:
        return [group]
    dropped = f"{len(excluded)} odd instance(s) excluded: {', '.join(short)}"
    if len(dropped) > 160:
        dropped = dropped[:157] + "..."
    if len(parts) == 1:  # one pass left once the odd instances are out: the series keeps its key
        kept = {h.key for h in parts[0].instances}
        return [replace(group, instances=parts[0].instances, excluded=excluded,
                        duplicates=[d for d in group.duplicates if d[1].key in kept],
                        pass_note=dropped)]
    parts.sort(key=lambda p: "+".join(p.labels))
    how = _summary(parts)
    out = []
    for n, part in enumerate(parts, 1):
        label = "+".join(part.labels)
        kept = {h.key for h in part.instances}
        note = f"pass {label} ({n} of {len(parts)}) of a series split by {how}"
        out.append(SeriesGroup(
            key=pass_key(group.key, label), uid_source=group.uid_source, study_key=group.study_key,
            study_uid_source=group.study_uid_source, folder=group.folder, instances=part.instances,
            duplicates=[d for d in group.duplicates if d[1].key in kept], parent_key=group.key, pass_label=label,
            pass_note=note, excluded=[],
            notes=[m for m in group.notes if any(m.startswith(f"{h.path.name} ") for h in part.instances)],
        ))
    if excluded:
        target = next((g for g in out if g.frame_count >= min_slices), out[0])
        target.excluded = excluded
        target.pass_note += f"; {dropped}"
    return out
