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
from .atlas import Atlas
from .canonical import Canonical
from .ncc import masked_ncc, peak
from .levels import SliceMatch, match_levels

HU_WINDOW = (-120.0, 80.0)  # fat vs soft tissue; contrast enhancement above 80 HU is clipped away
PATCH_MM = {"x": (-33.0, 33.0), "y": (-33.0, 33.0), "z": (-48.0, 30.0)}  # about the gland centre
SEARCH_MM = 36.0  # coarse search about the slice-matching estimate
FINE_PATCH_MM = {"x": (-24.0, 24.0), "y": (-24.0, 24.0), "z": (-33.0, 21.0)}
FINE_SEARCH_MM = 9.0
REGION_MM = {"x": (-96.0, 96.0), "y": (-78.0, 60.0), "z": (-66.0, 48.0)}  # about the glands' midpoint
REGION_SEARCH_MM = 24.0
LEVEL_HYPOTHESES = 4  # level matches tried per atlas when they are about as good as the best one
LEVEL_AMBIGUITY = 0.1  # ... within this share of the best level's cost
MAX_LEVEL_COST = 0.4  # an atlas whose best slice match differs more than this (mean squared class fraction) abstains
# ... times this when the field of view cuts through the spine (a scan of one side): the cells by the cut are partly
# seen and the spine's centre is estimated from a cut vertebra, so even the right level costs more (0.34-0.50 on
# the left halves of seeds 501-520 vs 0.03-0.39 on whole scans); the levels' consensus (``consensus_levels``)
# guards the rest
CUT_COST_FACTOR = 1.3


@dataclass
class GlandEstimate:
    """One atlas' estimate of one gland: box (LPS mm), NCC of the matched region, the slice match."""

    atlas: str
    side: str
    lo: np.ndarray
    hi: np.ndarray
    ncc: float
    match: SliceMatch
    region_ncc: float = 0.0  # the atlas' whole upper-abdominal region against the scan's (atlas selection)
    real: bool = True  # made from a patient's CT (False: from the synthetic generator)
    # the gland's place (LPS mm box) when the atlas' field of view cuts its gland (``Atlas.gland_extent``): ``lo``
    # and ``hi`` are the seen part moved (``lo`` minus the atlas gland's ``lo`` is the translation), this is what
    # the estimate claims
    extent: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.extent if self.extent is not None else (self.lo, self.hi)

    @property
    def centre(self) -> np.ndarray:
        lo, hi = self.box
        return (lo + hi) / 2


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
                 patch_mm: dict, search_mm: float, factor: int = 1, min_overlap: float = 0.4
                 ) -> tuple[np.ndarray, float] | None:
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
    if fm.sum() < 0.5 * min_overlap * tm.size or any(a < b for a, b in zip(f.shape, t.shape)):
        return None
    step = scan.step
    if factor > 1:
        t, tm, f, fm = _shrink(t, tm, factor), _shrink(tm, tm, factor) > 0.5, _shrink(f, fm, factor), _shrink(fm, fm, factor) > 0.5
        step = scan.step * factor
    score = masked_ncc(f, fm, t, tm, min_overlap=min_overlap)
    pos, value = peak(score)
    if value <= -0.99:  # no placement overlapped enough
        return None
    # template voxel 0 lands at scan voxel f_origin + step * pos (x, y, z order reversed); with block averaging the
    # first block's centre is (factor - 1) / 2 voxels in, for the template and the region alike
    moved_origin = f_origin + step * pos[::-1]
    return moved_origin - t_origin, value


@dataclass
class LevelGuess:
    """Where the slice match alone puts an atlas gland in the scan (LPS mm box), before block matching."""

    atlas: str
    side: str
    lo: np.ndarray
    hi: np.ndarray
    match: SliceMatch


@dataclass
class LevelHypothesis:
    """One level of an atlas in the scan: the slice match, how well the atlas' whole region then matches, and
    the scan z (mm) where that puts the midpoint of the atlas' glands."""

    match: SliceMatch
    region_ncc: float
    z: float


def level_hypotheses(scan: Canonical, sa: SliceAnatomy, atlas: Atlas, aa: SliceAnatomy) -> list[LevelHypothesis]:
    """The atlas' plausible levels in the scan, best region match first (empty when the scan shows no level of
    the atlas). A level match that barely beats another level (a scan of one side, a short slab: little to tell
    levels apart by) is not trusted alone: every level within ``LEVEL_AMBIGUITY`` of the best one is kept, each
    with the NCC of the atlas' whole region block-matched there."""
    max_cost = MAX_LEVEL_COST * (CUT_COST_FACTOR if sa.one_side else 1.0)
    matches = [m for m in match_levels(scan, sa, atlas.scan, aa, n=LEVEL_HYPOTHESES) if m.cost <= max_cost]
    matches = [m for m in matches if m.cost <= matches[0].cost * (1 + LEVEL_AMBIGUITY)]
    if not atlas.sides:
        return []
    mid = np.mean([np.mean(atlas.gland_box(s), axis=0) for s in atlas.sides], axis=0)
    out = []
    for match in matches:
        mid_guess = np.array([mid[0] - match.xy_shift[0], mid[1] - match.xy_shift[1],
                              (mid[2] - match.offset) / match.scale])
        region = _block_match(scan, atlas.scan, mid, mid_guess, REGION_MM, REGION_SEARCH_MM, factor=2,
                              min_overlap=0.15)
        z = float(mid[2] + region[0][2]) if region is not None else float(mid_guess[2])
        out.append(LevelHypothesis(match, region[1] if region is not None else 0.0, z))
    return sorted(out, key=lambda h: -h.region_ncc)


AGREE_MM = 20.0  # two atlases' levels whose gland midpoints lie this close in the scan agree


def consensus_levels(hypotheses: dict[str, list[LevelHypothesis]]) -> dict[str, LevelHypothesis]:
    """Per atlas the level to use: the one closest to the level that most atlases support (support of a scan z:
    the sum over atlases of their best region NCC among levels within ``AGREE_MM`` of it); an atlas with no level
    there abstains. Each atlas alone may prefer a wrong level of a scan of one side, but the wrong levels scatter
    while the right ones agree."""
    every = [h for hs in hypotheses.values() for h in hs]
    if not every:
        return {}

    def support(z: float) -> float:
        return sum(max((h.region_ncc for h in hs if abs(h.z - z) <= AGREE_MM), default=0.0)
                   for hs in hypotheses.values())

    z_best = max(every, key=lambda h: (support(h.z), h.region_ncc)).z
    out = {}
    for name, hs in hypotheses.items():
        if hs:
            near = [h for h in hs if abs(h.z - z_best) <= AGREE_MM]
            if near:
                out[name] = min(near, key=lambda h: abs(h.z - z_best))
    return out


def estimate(scan: Canonical, atlas: Atlas, level: LevelHypothesis) -> tuple[list[GlandEstimate], list[LevelGuess]]:
    """Both glands' estimates from one atlas at the given level, and the slice match's guesses (a side whose
    region is not in the field of view has a guess but no estimate; a side the atlas does not show has neither)."""
    match, region_ncc = level.match, level.region_ncc
    out, guesses = [], []
    for side in atlas.sides:
        lo, hi = atlas.gland_box(side)
        elo, ehi = atlas.gland_extent(side)
        cut = bool(np.any(elo != lo) or np.any(ehi != hi))
        ac = (lo + hi) / 2
        # the slice match's inverse: atlas z -> scan z, atlas xy -> scan xy
        guess = np.array([ac[0] - match.xy_shift[0], ac[1] - match.xy_shift[1], (ac[2] - match.offset) / match.scale])
        guesses.append(LevelGuess(atlas.name, side, elo - ac + guess, ehi - ac + guess, match))
        coarse = _block_match(scan, atlas.scan, ac, guess, PATCH_MM, SEARCH_MM, factor=2)
        if coarse is None:
            continue
        d, value = coarse
        fine = _block_match(scan, atlas.scan, ac, ac + d, FINE_PATCH_MM, FINE_SEARCH_MM)
        if fine is not None:
            d, value = fine
        out.append(GlandEstimate(atlas.name, side, lo + d, hi + d, value, match, region_ncc, atlas.real,
                                 (elo + d, ehi + d) if cut else None))
    return out, guesses


MIN_NCC = 0.2  # below this an atlas' match is noise
KEEP_WITHIN = 0.12  # atlases within this NCC of the best one vote
REAL_PREFERENCE = 0.1  # added to real atlases' region NCC when choosing between real and synthetic ones


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
    """Weighted median of the best-matching atlases' boxes (weights: NCC). The kind of anatomy that votes
    (synthetic vs. real) is selected by how well the atlases' whole upper-abdominal region matches (Aljabar P. et
    al., "Multi-atlas based segmentation of brain images: atlas selection and its effect on accuracy", NeuroImage
    2009); within that kind every atlas within ``KEEP_WITHIN`` of the best gland NCC votes with about equal weight:
    the NCC of atlases that match about as well says little about which is right, and a median over all of them is
    steadier than one dominated by the top one or two (measured on synthetic seeds 501-520: the right gland's
    height was off by up to 26 mm when two atlases chose)."""
    ests = [e for e in estimates if e.side == side and e.ncc >= MIN_NCC]
    if not ests:
        return None
    # one kind of anatomy votes: real atlases when they match about as well as synthetic ones (the generator's
    # glands sit 20-30 mm more posterior relative to kidneys and spine than in the real example CT)
    kinds = {k: max((e.region_ncc + (REAL_PREFERENCE if k else 0.0) for e in ests if e.real == k), default=-9.0)
             for k in (True, False)}
    real = kinds[True] >= kinds[False]
    ests = [e for e in ests if e.real == real]
    best = max(e.ncc for e in ests)
    vote = [e for e in ests if e.ncc >= best - KEEP_WITHIN]
    w = np.array([e.ncc for e in vote])
    centres = np.array([e.centre for e in vote])
    half = np.array([(e.box[1] - e.box[0]) / 2 for e in vote])
    c = np.array([_weighted_median(centres[:, d], w) for d in range(3)])
    h = np.array([_weighted_median(half[:, d], w) for d in range(3)])
    spread = np.sqrt(np.average((centres - c) ** 2, axis=0, weights=w)) if len(vote) > 1 else np.full(3, np.nan)
    return Fused(side, c - h, c + h, spread, best, [e.atlas for e in vote])
