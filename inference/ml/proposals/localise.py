"""Where each adrenal gland is, from atlases: slice matching for the level, then block matching of the
region about each gland (the atlas gland with the kidney's upper pole, crus, IVC or aorta and the liver or spleen
edge around it) by masked NCC, on the canonical 3 mm grid.

Per atlas and side the answer is the atlas gland's box moved by the best translation, with the NCC at that
translation; ``fuse`` combines the atlases.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import SliceAnatomy
from .atlas import SIDES, Atlas
from .canonical import Canonical
from .ncc import masked_ncc, peak
from .levels import SliceMatch, match_slices

HU_WINDOW = (-120.0, 80.0)  # fat vs soft tissue; contrast enhancement above 80 HU is clipped away
PATCH_MM = {"x": (-33.0, 33.0), "y": (-33.0, 33.0), "z": (-48.0, 30.0)}  # about the gland centre
SEARCH_MM = 36.0  # coarse search about the slice-matching estimate
FINE_PATCH_MM = {"x": (-24.0, 24.0), "y": (-24.0, 24.0), "z": (-33.0, 21.0)}
FINE_SEARCH_MM = 9.0


@dataclass
class GlandEstimate:
    """One atlas' estimate of one gland: box (LPS mm), NCC of the matched region, the slice match."""

    atlas: str
    side: str
    lo: np.ndarray
    hi: np.ndarray
    ncc: float
    match: SliceMatch

    @property
    def centre(self) -> np.ndarray:
        return (self.lo + self.hi) / 2


def _window(hu: np.ndarray) -> np.ndarray:
    return np.clip(hu, *HU_WINDOW).astype(np.float32)


def _crop(c: Canonical, lo_mm: np.ndarray, hi_mm: np.ndarray, pad_valid: bool = False):
    """Sub-array of ``c`` covering LPS ``[lo_mm, hi_mm]`` (padded with invalid voxels where it leaves the grid):
    (values, valid, origin mm of element 0)."""
    i0 = np.floor(c.to_index(lo_mm)).astype(int)  # z, y, x
    i1 = np.ceil(c.to_index(hi_mm)).astype(int) + 1
    size = i1 - i0
    vals = np.full(size, HU_WINDOW[0], np.float32)
    valid = np.zeros(size, bool)
    a = np.maximum(i0, 0)
    b = np.minimum(i1, c.shape)
    if np.all(b > a):
        src = tuple(slice(int(p), int(q)) for p, q in zip(a, b))
        dst = tuple(slice(int(p - o), int(q - o)) for p, q, o in zip(a, b, i0))
        vals[dst] = _window(c.hu[src])
        valid[dst] = c.valid[src]
    return vals, valid, c.origin + c.step * i0[::-1]


def _shrink(a: np.ndarray, weight: np.ndarray, f: int) -> np.ndarray:
    """Block mean by ``f`` along every axis (over ``weight``-true voxels; the trailing partial block dropped)."""
    n = [s // f for s in a.shape]
    a = a[: n[0] * f, : n[1] * f, : n[2] * f].astype(np.float32)
    w = weight[: n[0] * f, : n[1] * f, : n[2] * f].astype(np.float32)
    sw = (w).reshape(n[0], f, n[1], f, n[2], f).sum(axis=(1, 3, 5))
    if a is w or a.dtype == bool:
        return sw / f ** 3
    sa = (a * w).reshape(n[0], f, n[1], f, n[2], f).sum(axis=(1, 3, 5))
    return sa / np.maximum(sw, 1e-6)


def _block_match(scan: Canonical, atlas: Canonical, atlas_centre: np.ndarray, scan_guess: np.ndarray,
                 patch_mm: dict, search_mm: float, factor: int = 1) -> tuple[np.ndarray, float] | None:
    """Best translation ``d`` (LPS mm) such that the atlas region about ``atlas_centre`` matches the scan region
    about ``atlas_centre + d``, searched within ``search_mm`` of ``scan_guess``; and its NCC."""
    plo = np.array([patch_mm["x"][0], patch_mm["y"][0], patch_mm["z"][0]])
    phi = np.array([patch_mm["x"][1], patch_mm["y"][1], patch_mm["z"][1]])
    t, tm, t_origin = _crop(atlas, atlas_centre + plo, atlas_centre + phi)
    if tm.sum() < 0.3 * tm.size or np.ptp(t[tm]) < 1:
        return None
    s_lo = scan_guess + plo - search_mm
    s_hi = scan_guess + phi + search_mm
    f, fm, f_origin = _crop(scan, s_lo, s_hi)
    if fm.sum() < 0.1 * tm.size or any(a < b for a, b in zip(f.shape, t.shape)):
        return None
    step = scan.step
    if factor > 1:
        t, tm, f, fm = _shrink(t, tm, factor), _shrink(tm, tm, factor) > 0.5, _shrink(f, fm, factor), _shrink(fm, fm, factor) > 0.5
        step = scan.step * factor
    score = masked_ncc(f, fm, t, tm, min_overlap=0.4)
    pos, value = peak(score)
    # template voxel 0 lands at scan voxel f_origin + step * pos (x, y, z order reversed); with block averaging the
    # first block's centre is (factor - 1) / 2 voxels in, for the template and the region alike
    moved_origin = f_origin + step * pos[::-1]
    return moved_origin - t_origin, value


def estimate(scan: Canonical, sa: SliceAnatomy, atlas: Atlas, aa: SliceAnatomy) -> list[GlandEstimate]:
    """Both glands' estimates from one atlas (empty when the scan shows no level of the atlas)."""
    match = match_slices(scan, sa, atlas.scan, aa)
    if match is None:
        return []
    out = []
    for side in SIDES:
        lo, hi = atlas.gland_box(side)
        ac = (lo + hi) / 2
        # the slice match's inverse: atlas z -> scan z, atlas xy -> scan xy
        guess = np.array([ac[0] - match.xy_shift[0], ac[1] - match.xy_shift[1], (ac[2] - match.offset) / match.scale])
        coarse = _block_match(scan, atlas.scan, ac, guess, PATCH_MM, SEARCH_MM, factor=2)
        if coarse is None:
            continue
        d, value = coarse
        fine = _block_match(scan, atlas.scan, ac, ac + d, FINE_PATCH_MM, FINE_SEARCH_MM)
        if fine is not None:
            d, value = fine
        out.append(GlandEstimate(atlas.name, side, lo + d, hi + d, value, match))
    return out


MIN_NCC = 0.2  # below this an atlas' match is noise
KEEP_WITHIN = 0.12  # atlases within this NCC of the best one vote


@dataclass
class Fused:
    """A side's fused estimate: gland box (LPS mm), the spread of the voting atlases' centres (mm, per axis),
    the best NCC, and which atlases voted."""

    side: str
    lo: np.ndarray
    hi: np.ndarray
    spread: np.ndarray
    ncc: float
    atlases: list[str]

    @property
    def centre(self) -> np.ndarray:
        return (self.lo + self.hi) / 2


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cw, 0.5 * cw[-1])])


def fuse(estimates: list[GlandEstimate], side: str) -> Fused | None:
    """Weighted median of the best-matching atlases' boxes (weights: NCC above the voting floor)."""
    ests = [e for e in estimates if e.side == side and e.ncc >= MIN_NCC]
    if not ests:
        return None
    best = max(e.ncc for e in ests)
    vote = [e for e in ests if e.ncc >= best - KEEP_WITHIN]
    w = np.array([e.ncc - (best - KEEP_WITHIN) + 0.02 for e in vote])
    centres = np.array([e.centre for e in vote])
    half = np.array([(e.hi - e.lo) / 2 for e in vote])
    c = np.array([_weighted_median(centres[:, d], w) for d in range(3)])
    h = np.array([_weighted_median(half[:, d], w) for d in range(3)])
    spread = np.sqrt(np.average((centres - c) ** 2, axis=0, weights=w)) if len(vote) > 1 else np.full(3, np.nan)
    return Fused(side, c - h, c + h, spread, best, [e.atlas for e in vote])
