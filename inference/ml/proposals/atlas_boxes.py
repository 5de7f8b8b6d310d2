"""Both adrenal boxes from atlases: each gland localised by multi-atlas matching, a lesion next to it added,
the box sized to the gland with a margin for the atlases' disagreement, no side longer than ``MAX_SIDE_MM``.

Steps (each in its module): the scan on a 3 mm LPS grid (``canonical``), body, spine and per-slice tissue
descriptors (``anatomy``), the level of every atlas (``levels``), block matching of each atlas gland's region
(``localise``), fusion of the atlases, lesion extension (``lesions``). A side is "not covered" only when its
gland's expected place lies outside the field of view (above or below the scanned slices, or cut off at the
side), and the note says by how much; the other side keeps its box.
"""
from __future__ import annotations

import numpy as np

from ..geometry import Box
from ..volume import Volume
from .anatomy import slice_anatomy
from .atlas import SIDES, Atlas, shipped_atlases
from .canonical import Canonical, canonical
from .landmark_boxes import MIN_BELOW_LUNG_BASE_MM
from .landmarks import find_landmarks
from .lesions import lesion_extent
from .localise import GlandEstimate, LevelGuess, consensus_levels, estimate, fuse, level_hypotheses
from .result import Proposal, SideProposal

MAX_SIDE_MM = 70.0
# x, y, z: at least this. The fused gland box is an atlas' gland, not this patient's: on synthetic seeds 501-520
# the patients' glands (with lesion) spanned up to 38 x 49 x 35 mm and the fused centres were off by up to 8, 12 and
# 26 mm (x, y, z), so no side can be tightened below the 70 mm allowed (64 mm in x and y left 1005 R out by 0.3 mm)
MIN_SIDE_MM = np.array([70.0, 70.0, 70.0])
MARGIN_MM = 8.0  # about the fused gland box, plus the atlases' spread
MIN_INSIDE = 0.02  # share of the expected gland box (+ EDGE_MM) in the field of view below which it is "not covered"
EDGE_MM = 5.0
NOT_LOCATED = "not located: no atlas level matches the scan"
LEVEL_EDGE_MM = np.array([5.0, 5.0, 15.0])  # the level match alone is less sure of z


def _fov_share(scan: Canonical, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of the LPS box ``[lo, hi]`` that lies in the scan's field of view (sampled on the 3 mm grid)."""
    axes = [np.linspace(a, b, max(2, int(np.ceil((b - a) / scan.step)) + 1)) for a, b in zip(lo, hi)]
    p = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    idx = np.rint(scan.to_index(p)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(scan.shape)), axis=1)
    ok = np.zeros(len(p), bool)
    ok[inside] = scan.valid[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
    return float(ok.mean())


def _outside_note(scan: Canonical, side: str, lo: np.ndarray, hi: np.ndarray) -> str:
    """What is missing when the expected gland box ``[lo, hi]`` is not in the field of view."""
    z0, z1 = scan.scanned_z
    name = {"R": "right", "L": "left"}[side]
    if lo[2] > z1 - scan.step:
        return (f"the scan ends {max(lo[2] - z1, 0):.0f} mm below the {name} adrenal's expected level "
                f"(z {lo[2]:.0f}..{hi[2]:.0f} mm; abdomen below the glands or pelvis only?)")
    if hi[2] < z0 + scan.step:
        return (f"the scan starts {max(z0 - hi[2], 0):.0f} mm above the {name} adrenal's expected level "
                f"(z {lo[2]:.0f}..{hi[2]:.0f} mm; chest only?)")
    return (f"the {name} adrenal's expected place (x {lo[0]:.0f}..{hi[0]:.0f}, y {lo[1]:.0f}..{hi[1]:.0f} "
            f"mm) is outside the field of view")


def _box(scan: Canonical, core_lo: np.ndarray, core_hi: np.ndarray, lesion: tuple[np.ndarray, np.ndarray] | None,
         margin: np.ndarray) -> Box:
    """The side's box, clipped to the scanned slices. Without a lesion: the gland core with ``margin``, at least
    MIN_SIDE_MM, at most MAX_SIDE_MM, centred on the core. With one: MAX_SIDE_MM on every side; on each axis
    where the lesion lies off the gland's centre the box must hold the gland's far edge with the same ``margin``
    (the gland is no better localised for having a lesion beside it) and the lesion's seen part, and what is left
    of MAX_SIDE_MM is shared between the two ends (the lesion's seen part may be cut short by the organ it
    touches; the gland may lie further out than the atlases say)."""
    centre = (core_lo + core_hi) / 2
    if lesion is None:
        size = np.clip(core_hi - core_lo + 2 * margin, MIN_SIDE_MM, MAX_SIDE_MM)
        wlo = centre - size / 2
    else:
        size = np.full(3, MAX_SIDE_MM)
        lc = (lesion[0] + lesion[1]) / 2
        off = lc - centre
        wlo = (np.minimum(core_lo, lesion[0]) + np.maximum(core_hi, lesion[1])) / 2 - size / 2
        need_lo = np.minimum(core_lo - margin, lesion[0])
        need_hi = np.maximum(core_hi + margin, lesion[1])
        slack = np.maximum(size - (need_hi - need_lo), 0.0)
        wlo = np.where(off > 3.0, need_lo - slack / 2, wlo)
        wlo = np.where(off < -3.0, need_hi + slack / 2 - size, wlo)
    whi = wlo + size
    z0, z1 = scan.scanned_z
    wlo[2], whi[2] = max(wlo[2], z0), min(whi[2], z1)
    return Box(tuple(wlo), tuple(whi))


def _confidence(ncc: float, spread: np.ndarray, n_votes: int) -> float:
    s = float(np.nanmax(spread)) if n_votes > 1 and np.isfinite(spread).any() else 8.0
    return float(np.clip((ncc - 0.2) / 0.5, 0, 1) * np.exp(-s / 12.0) * (1.0 if n_votes > 1 else 0.8))


def propose_side(scan: Canonical, body: np.ndarray, side: str, estimates: list[GlandEstimate],
                 guesses: list[LevelGuess], atlases: dict[str, Atlas]) -> SideProposal:
    """One gland's box, or "not_covered" when its expected place (by the level match, and by the block match
    when there is one) has no overlap with the field of view."""
    fused = fuse(estimates, side)
    real = atlases[fused.atlases[0]].real if fused else None
    g = [x for x in guesses if x.side == side and (real is None or atlases[x.atlas].real == real)]
    if not g:
        return SideProposal("not_covered", method="atlas", note=NOT_LOCATED)
    g_lo, g_hi = np.median([x.lo for x in g], axis=0), np.median([x.hi for x in g], axis=0)
    if _fov_share(scan, g_lo - LEVEL_EDGE_MM, g_hi + LEVEL_EDGE_MM) < MIN_INSIDE:
        return SideProposal("not_covered", method="atlas", note=_outside_note(scan, side, g_lo, g_hi))
    if fused is None:
        box = _box(scan, g_lo, g_hi, None, np.full(3, 2 * MARGIN_MM))
        return SideProposal("proposed", box, 0.05, "atlas-level",
                            "located from the slice level only (no atlas region matched): check it")
    if _fov_share(scan, fused.lo - EDGE_MM, fused.hi + EDGE_MM) < MIN_INSIDE:
        return SideProposal("not_covered", method="atlas", note=_outside_note(scan, side, fused.lo, fused.hi))
    votes = [e for e in estimates if e.side == side and e.atlas in fused.atlases]
    extra = lesion_extent(scan, body, fused.lo, fused.hi, votes, atlases)
    spread = np.nan_to_num(fused.spread, nan=4.0)
    box = _box(scan, fused.lo, fused.hi, extra, MARGIN_MM + np.minimum(spread, 10.0))
    notes = []
    if extra is not None:
        notes.append("placed for a mass next to the gland that the atlases do not show (lesion?)")
    share = _fov_share(scan, fused.lo, fused.hi)
    if share < 0.9:
        notes.append(f"gland partly outside the field of view (about {100 * share:.0f}% inside)")
    return SideProposal("proposed", box, _confidence(fused.ncc, fused.spread, len(fused.atlases)), "atlas",
                        "; ".join(notes))


def propose_from_atlases(volume: Volume, atlases: list[Atlas] | None = None,
                         exclude_sources: tuple[str, ...] = ()) -> Proposal:
    """Boxes for both glands of a CT volume (any orientation and spacing), per side "not covered" with the
    reason when that gland is outside the field of view. ``atlases`` default to the shipped ones, less those
    made from ``exclude_sources`` (e.g. ``("totalsegmentator:example_ct",)`` to test on that scan fairly)."""
    scan = canonical(volume)
    sa = slice_anatomy(scan)
    if not sa.body.any():
        return Proposal.not_covered("adrenal region not located: no body in the field of view", method="atlas")
    pool = atlases if atlases is not None else shipped_atlases(exclude_sources=exclude_sources)
    by_name = {a.name: a for a in pool}
    estimates: list[GlandEstimate] = []
    guesses: list[LevelGuess] = []
    levels = consensus_levels({a.name: level_hypotheses(scan, sa, a, a_anatomy(a)) for a in pool})
    for name, level in levels.items():
        e, g = estimate(scan, by_name[name], level)
        estimates += e
        guesses += g
    sides = {s: propose_side(scan, sa.body, s, estimates, guesses, by_name) for s in SIDES}
    if all(p.note == NOT_LOCATED for p in sides.values()):
        why = _landmark_reason(volume)
        for p in sides.values():
            p.note = f"{NOT_LOCATED} ({why})"
        return Proposal.from_sides(sides, method="atlas", prefix="adrenal region not located")
    return Proposal.from_sides(sides, method="atlas")


def _landmark_reason(volume: Volume) -> str:
    """What the lung-base landmarks say about a scan no atlas level matches."""
    marks = find_landmarks(volume)
    if marks.problem:
        return f"{marks.problem}: pelvis or head only?" if "lungs" in marks.problem else marks.problem
    below = min(marks.lung_base_z.values()) - marks.scan_z[0]
    if below < MIN_BELOW_LUNG_BASE_MM:
        return f"the scan ends {max(below, 0.0):.0f} mm below the lung bases: chest only?"
    return "lung bases found but the trunk around them matches no atlas"


_ANATOMY_CACHE: dict[int, object] = {}


def a_anatomy(atlas: Atlas):
    """The atlas' slice anatomy (computed once per loaded atlas)."""
    key = id(atlas)
    if key not in _ANATOMY_CACHE:
        _ANATOMY_CACHE[key] = (atlas, slice_anatomy(atlas.scan))
    return _ANATOMY_CACHE[key][1]
