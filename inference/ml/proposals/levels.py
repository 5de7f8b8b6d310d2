"""Which level of an atlas each slice of a scan shows: ``z_atlas = offset + scale * z_scan``, found by an
exhaustive search over offset and scale of the per-slice tissue descriptors (``anatomy.descriptors``), and the
in-plane shift that aligns the two spines over the matched slices.

This is the first, global step of the atlas registration: no landmark needs to be in the field of view, only
enough trunk to recognise the level (a 40 mm slab, a scan of one side), and an absolute table position or a
flipped storage order does not matter (the scan is on the canonical LPS grid by then).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import N_CLASSES, SliceAnatomy
from .canonical import Canonical

Z_SCALES = (0.88, 0.94, 1.0, 1.06, 1.12)
MIN_OVERLAP_MM = 24.0
LEVEL_APART_MM = 45.0  # level hypotheses closer than this are one hypothesis


@dataclass
class SliceMatch:
    """``z_atlas = offset + scale * z_scan``; ``xy_shift`` added to scan (x, y) gives atlas (x, y)."""

    offset: float
    scale: float
    xy_shift: np.ndarray
    cost: float
    contrast: float  # how much better than the typical offset (median cost / best cost)


def _feature_weights(weight: np.ndarray) -> np.ndarray:
    return np.repeat(weight, N_CLASSES, axis=1)


def match_levels(scan: Canonical, sa: SliceAnatomy, atlas: Canonical, aa: SliceAnatomy, n: int = 1,
                 apart_mm: float = LEVEL_APART_MM) -> list[SliceMatch]:
    """The ``n`` best level matches, best first, each placing the scan's centre slice at least ``apart_mm``
    from the others' in the atlas (distinct hypotheses, not neighbours of one minimum); empty when no slice of
    the scan has a body and spine."""
    ks = np.nonzero(sa.weight.sum(axis=1) > 0)[0]
    ms = np.nonzero(aa.weight.sum(axis=1) > 0)[0]
    if len(ks) == 0 or len(ms) == 0:
        return []
    S, ws = sa.desc[ks].astype(np.float64), sa.weight[ks].astype(np.float64)
    A, wa = aa.desc[ms].astype(np.float64), aa.weight[ms].astype(np.float64)
    fs, fa = _feature_weights(ws), _feature_weights(wa)
    num = (fs * S * S) @ fa.T - 2 * (fs * S) @ (fa * A).T + fs @ (fa * A * A).T
    den = ws @ wa.T
    cost = np.where(den > 0, num / np.maximum(den, 1e-9), np.nan)  # [scan slice, atlas slice]
    z_scan = scan.z_of(ks)
    z_atl = atlas.z_of(ms)
    step = atlas.step
    need = max(1, int(np.ceil(min(MIN_OVERLAP_MM, 0.8 * (z_scan[-1] - z_scan[0] + scan.step)) / scan.step)))
    zc = (z_scan[0] + z_scan[-1]) / 2
    finite = ~np.isnan(cost)
    cost0 = np.where(finite, cost, 0.0)
    cands = []  # (mean cost, atlas z of the scan's centre, offset, scale, used, atlas slice per scan slice)
    all_costs = []
    kidx = np.arange(len(ks))[None, :]
    for s in Z_SCALES:
        half = 0.5 * s * (z_scan[-1] - z_scan[0])
        zts = np.arange(z_atl[0] - half, z_atl[-1] + half + step, step)  # the scan's centre at every atlas level
        za = zts[:, None] + s * (z_scan - zc)[None, :]
        m = np.rint((za - z_atl[0]) / step).astype(int)
        ok = (m >= 0) & (m < len(ms))
        mc = np.clip(m, 0, len(ms) - 1)
        use = ok & finite[kidx, mc]
        cnt = use.sum(axis=1)
        total = np.where(use, cost0[kidx, mc], 0.0).sum(axis=1)
        good = cnt >= need
        if not good.any():
            continue
        mean = np.where(good, total / np.maximum(cnt, 1), np.inf)
        all_costs.extend(mean[good].tolist())
        for i in np.nonzero(good)[0]:
            cands.append((float(mean[i]), float(zts[i]), float(zts[i] - s * zc), s, use[i], mc[i]))
    if not cands:
        return []
    cands.sort(key=lambda t: t[0])
    chosen = []
    for cand in cands:
        if len(chosen) == n:
            break
        if all(abs(cand[1] - c[1]) >= apart_mm for c in chosen):
            chosen.append(cand)
    typical = float(np.median(all_costs))
    out = []
    for c, _, offset, s, ok, m in chosen:
        kk = ks[ok]
        mm = ms[m[ok]]
        shift = np.nanmedian(aa.spine_xy[mm] - sa.spine_xy[kk], axis=0)
        out.append(SliceMatch(offset=float(offset), scale=float(s), xy_shift=shift, cost=c,
                              contrast=typical / max(c, 1e-6)))
    return out
