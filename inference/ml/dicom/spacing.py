"""What the slice positions of one pass are, and the grid it is stacked or resampled on — or why it is refused.

Positions are the frames' distances along the slice normal, sorted. Steps are grouped into *runs* of equal
steps (within 1 % or 0.02 mm of the run's first step). Policy, with the reason it gives:

- **regular**: every step within 1 % (or 0.02 mm) of the median: stacked as is, at the mean step; so are
  positions written to 0.1 mm (``ROUNDING_MM``) that are a regular grid rounded (1.25 mm steps stored as 1.2 and
  1.3 mm, 0.625 mm ones as 0.6 and 0.7 mm: ``rounded_grid_step``), with a note;
- positions written to 0.1 mm (``position_rounding``; along a tilted normal 0.1 mm x its components along the
  rounded coordinates) with gaps: steps within 0.1 mm are one run, a gap may be 0.1 mm over ``MAX_GAP_FACTOR``
  x the local step, and the grid's step is the mean step between the gaps (the rounded steps' median is 0.1 mm
  off);
- **duplicates**: two frames at one position (within 0.001 mm) whose HU differ (a copy with the same HU is left
  out before, by ``stack.load_series``): refused ("duplicate slice positions", with how
  many) — passes that a header attribute tells apart were split before (``passes.py``), so nothing does here;
- **missing slices**: an isolated step (a run of one) over ``GAP_RATIO`` x the larger of its neighbouring
  runs' steps is a gap in the grid around it. One missing slice (gap up to ``MAX_GAP_FACTOR`` x that local
  step) is interpolated; a larger gap is refused with its size, place and the local step;
- **variable increment**: two or more runs of at least two steps whose steps differ by ``VARIABLE_RATIO`` or
  more (fine slices over one region, coarser elsewhere, as planned on the scanner): resampled onto a regular
  grid at the finest run's step (as dcm2niix's equidistant ``_Eq`` copy), so no acquired detail is lost;
- **uneven**: anything else (jitter): resampled onto the median step.

Resampling is linear along the normal between the two acquired slices around each target, at the targets'
true positions ``d0 + k * step``; the volume's affine says where they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_GAP_FACTOR = 2.0
GAP_RATIO = 1.5
VARIABLE_RATIO = 1.5
DUPLICATE_MM = 1e-3
ROUNDING_MM = 0.1  # the coarsest precision slice positions are written with (scanners, converters, anonymisers)


class SeriesError(Exception):
    """A series that cannot become a correct volume; the message is the reason."""


@dataclass
class SpacingPlan:
    """``kind``: regular, uneven, variable or missing (one slice interpolated); ``step``: the output step in
    mm; ``resample``: whether slices are interpolated onto ``d0 + k * step``; ``notes``: why, for the report."""

    kind: str
    step: float
    resample: bool
    notes: list[str] = field(default_factory=list)


def _tol(step: float) -> float:
    return max(0.01 * abs(step), 0.02)


def runs_of(steps: np.ndarray, slack: float = 0.0) -> list[tuple[int, int, float]]:
    """Maximal runs of equal steps as ``(first step index, length, mean step)``; ``slack``: how far apart two
    steps of one run may be besides (``ROUNDING_MM`` for positions written to 0.1 mm)."""
    runs: list[tuple[int, int, float]] = []
    start = 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or abs(steps[i] - steps[start]) > max(_tol(steps[start]), slack + 1e-6):
            runs.append((start, i - start, float(np.mean(steps[start:i]))))
            start = i
    return runs


def _fmt_runs(runs: list[tuple[int, int, float]]) -> str:
    return ", ".join(f"{step:.2f} mm x{length}" for _, length, step in runs if length >= 2)


def written_to_tenths(values: np.ndarray) -> bool:
    """Whether every value (mm) is a multiple of ``ROUNDING_MM``: written to 0.1 mm, each up to 0.05 mm from the
    true value."""
    tenths = np.asarray(values, float) / ROUNDING_MM
    return bool(tenths.size) and bool(np.abs(tenths - np.rint(tenths)).max() <= 1e-4)


def position_rounding(positions: np.ndarray, normal: np.ndarray) -> float:
    """How far a position along ``normal`` of ``positions`` (ImagePositionPatient, ``[n, 3]`` mm) may be from the
    grid it was written from, twice over (a step between two of them): ``ROUNDING_MM`` x the sum of the normal's
    components along the coordinates written to 0.1 mm (the table position often is, x and y not; along a tilted
    normal the positions are no multiples of 0.1 mm, but as rounded); 0 when none is (written finer: the usual
    tolerances hold)."""
    positions, normal = np.asarray(positions, float).reshape(-1, 3), np.asarray(normal, float)
    return ROUNDING_MM * float(sum(abs(normal[c]) for c in range(3) if written_to_tenths(positions[:, c])))


def _rounding(d: np.ndarray, rounding: float | None) -> float:
    """``rounding`` as given, or, for callers holding only the positions along an axial normal, ``ROUNDING_MM``
    when they are written to 0.1 mm."""
    if rounding is not None:
        return float(rounding)
    return ROUNDING_MM if written_to_tenths(d) else 0.0


def rounded_grid_step(d: np.ndarray, rounding: float | None = None) -> float | None:
    """The step of the regular grid that sorted positions ``d`` (mm along the normal) are when written to 0.1 mm
    (``position_rounding``; ``rounding`` None: ``d`` itself written to 0.1 mm): every position within the
    rounding of the grid through the first and the last (each rounded position is within half of it of its true
    place); None otherwise. A 1.25 mm series stored as -123.5, -122.2, -121.0, ... has steps of 1.2 and 1.3 mm:
    one grid, not jitter, nor two passes 2.5 mm apart."""
    d = np.asarray(d, float)
    slack = _rounding(d, rounding)
    if len(d) < 3 or not slack:
        return None
    step = float((d[-1] - d[0]) / (len(d) - 1))
    if step < 2 * slack:
        return None
    off = d - d[0] - step * np.arange(len(d))
    return step if np.abs(off).max() <= slack + 1e-6 else None


def plan_spacing(d: np.ndarray, rounding: float | None = None) -> SpacingPlan:
    """The plan for sorted positions ``d`` (mm along the normal, at least 2); raises SeriesError when refused.
    ``rounding``: ``position_rounding`` of the slices' positions (None: from ``d``, as along an axial normal)."""
    d = np.asarray(d, float)
    steps = np.diff(d)
    if len(d) > 1 and d[-1] - d[0] < DUPLICATE_MM:
        raise SeriesError(
            f"all {len(d)} images lie at one position ({d[0]:.2f} mm along the normal): a series of one location "
            "over time (bolus tracking, a perfusion or fluoroscopy series), not a volume")
    if (steps < DUPLICATE_MM).any():
        dup = np.flatnonzero(steps < DUPLICATE_MM)
        raise SeriesError(
            f"duplicate slice positions: {len(dup)} position(s) hold more than one image (first at {d[dup[0]]:.2f} mm "
            f"along the normal); no header attribute tells the passes apart (several acquisitions?)"
        )
    median = float(np.median(steps))
    if np.all(np.abs(steps - median) <= _tol(median)):
        return SpacingPlan("regular", float((d[-1] - d[0]) / (len(d) - 1)), False)
    slack = _rounding(d, rounding)
    rounded = rounded_grid_step(d, slack)
    if rounded is not None:
        return SpacingPlan("regular", rounded, False, [
            f"slice positions written to {ROUNDING_MM:g} mm (steps {steps.min():.2f}-{steps.max():.2f} mm): one "
            f"regular grid, stacked at its {rounded:.4g} mm step"])
    # positions written to 0.1 mm: steps of one run differ by up to the rounding, a gap's by as much from twice
    # the step
    runs = runs_of(steps, slack)
    notes: list[str] = []
    gaps = []
    for r, (start, length, step) in enumerate(runs):
        if length != 1:
            continue
        neighbours = [runs[x][2] for x in (r - 1, r + 1) if 0 <= x < len(runs)]
        local = max(neighbours) if neighbours else median
        if step > GAP_RATIO * local:
            gaps.append((start, step, local))
    for start, step, local in gaps:
        if step > MAX_GAP_FACTOR * local * 1.01 + slack:
            raise SeriesError(
                f"missing slices: gap of {step:.2f} mm after slice {start} at {d[start]:.2f} mm (local step "
                f"{local:.2f} mm, about {int(round(step / local)) - 1} slices missing); refused, gaps over "
                f"{MAX_GAP_FACTOR:g}x the local step are not interpolated"
            )
        notes.append(f"one missing slice: gap of {step:.2f} mm after slice {start} interpolated")
    long_runs = [r for r in runs if r[1] >= 2]
    run_steps = [r[2] for r in long_runs]
    if len(long_runs) >= 2 and max(run_steps) >= VARIABLE_RATIO * min(run_steps):
        step = float(min(run_steps))
        notes.insert(0, f"variable slice increment ({_fmt_runs(runs)}): resampled to a regular {step:.3f} mm "
                        f"grid (the finest increment)")
        return SpacingPlan("variable", step, True, notes)
    if gaps:
        if slack:  # the rounded steps' median is 0.1 mm off (0.6 for 0.625 mm): the mean of those between the gaps
            median = float(np.mean(np.delete(steps, [start for start, _, _ in gaps])))
        return SpacingPlan("missing", median, True, notes + [f"resampled to {median:.3f} mm"])
    return SpacingPlan("uneven", median, True,
                       [f"uneven spacing (steps {steps.min():.2f}-{steps.max():.2f} mm): resampled to {median:.3f} mm"])
