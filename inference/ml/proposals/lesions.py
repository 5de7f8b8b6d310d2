"""Tissue next to a gland that its atlases do not explain: a lesion growing out of the gland.

Each voting atlas, moved by its block-matching translation, says which voxels about the gland should be fat and
which soft tissue. Scan voxels whose class (soft tissue ``SOFT_HU`` or fat below ``FAT_HU``) most voting atlases
contradict, cleaned by a 3-D opening, in a component of at least ``MIN_ML`` with a solid core and touching the
gland's box, are taken as lesion: adenomas, cysts and heterogeneous masses (soft tissue where fat should be) and
myelolipomas (fat where crus, kidney or liver edge should be). Misregistered organ edges are thin and removed by the
opening and the core test; small lesions need no detection (the box margin holds them).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .atlas import Atlas
from .canonical import Canonical
from .localise import GlandEstimate

SOFT_HU = (-40.0, 130.0)  # lesion contents; enhancing vessels and bone lie above
FAT_HU = -50.0
REACH_MM = 30.0  # how far from the gland's box a lesion may extend
MIN_ML = 1.0  # a 12 mm lesion; smaller ones fit in the box's margin anyway
MIN_CORE_VOXELS = 8  # left after one more erosion: a solid blob, not a sliver
# A lone voting atlas matched this poorly is another patient's anatomy registered 10 mm or more off (organ edges
# misplaced everywhere), and its "contradictions" are no lesion: measured, every lone voter below 0.46 was a real
# atlas on the other real patient (the example CT and the DICOM series each against the other's atlas, NCC
# 0.44-0.45), and each flagged a mass that is not there (neither patient has one); lone voters that found real
# lesions matched at 0.73 and 0.82 (synthetic scans of one gland), the lowest lone voter of the synthetic cohorts
# at 0.67. Such a side keeps the plain box about the gland.
LONE_VOTER_MIN_NCC = 0.6


def lesion_extent(scan: Canonical, body: np.ndarray, lo: np.ndarray, hi: np.ndarray, votes: list[GlandEstimate],
                  atlases: dict[str, Atlas]) -> tuple[np.ndarray, np.ndarray] | None:
    """LPS box (lo, hi) of the unexplained soft tissue touching the gland box ``[lo, hi]``, or None."""
    if not votes or (len(votes) == 1 and votes[0].ncc < LONE_VOTER_MIN_NCC):
        return None
    i0 = np.maximum(np.floor(scan.to_index(lo - REACH_MM)).astype(int), 0)
    i1 = np.minimum(np.ceil(scan.to_index(hi + REACH_MM)).astype(int) + 1, scan.shape)
    if np.any(i1 <= i0):
        return None
    sl = tuple(slice(int(a), int(b)) for a, b in zip(i0, i1))
    hu = scan.hu[sl]
    ok_scan = scan.valid[sl] & body[sl]
    soft = (hu > SOFT_HU[0]) & (hu < SOFT_HU[1]) & ok_scan
    fat = (hu < FAT_HU) & (hu > -300) & ok_scan
    zz, yy, xx = np.meshgrid(*(np.arange(a, b) for a, b in zip(i0, i1)), indexing="ij")
    p = scan.to_mm(np.stack([zz, yy, xx], -1))
    count = np.zeros(hu.shape, np.int16)
    for e in votes:
        atlas = atlases[e.atlas].scan
        d = e.lo - atlases[e.atlas].gland_box(e.side)[0]  # the estimate's translation
        idx = atlas.to_index(p - d)
        vals = ndimage.map_coordinates(atlas.hu, np.moveaxis(idx, -1, 0), order=1, cval=0.0)
        ok = ndimage.map_coordinates(atlas.valid.astype(np.float32), np.moveaxis(idx, -1, 0), order=0, cval=0.0) > 0
        a_fat = ok & (vals < FAT_HU) & (vals > -300)
        a_soft = ok & (vals > SOFT_HU[0]) & (vals < SOFT_HU[1])
        count += ((soft & a_fat) | (fat & a_soft)).astype(np.int16)
    cross = ndimage.generate_binary_structure(3, 1)
    cand = ndimage.binary_opening(count * 2 > len(votes), structure=cross)
    lab, n = ndimage.label(cand)
    if n == 0:
        return None
    gl = np.floor(scan.to_index(lo)).astype(int) - i0 - 1
    gh = np.ceil(scan.to_index(hi)).astype(int) - i0 + 1
    gl, gh = np.maximum(gl, 0), np.minimum(gh, hu.shape)
    touching = np.unique(lab[tuple(slice(int(a), int(b)) for a, b in zip(gl, gh))])
    sizes = np.bincount(lab.ravel())
    core = np.bincount(lab[ndimage.binary_erosion(cand, structure=cross)], minlength=n + 1)
    min_voxels = MIN_ML * 1000.0 / scan.step ** 3
    keep = [t for t in touching if t > 0 and sizes[t] >= min_voxels and core[t] >= MIN_CORE_VOXELS]
    if not keep:
        return None
    pts = p[np.isin(lab, keep)]
    half = scan.step / 2
    return pts.min(axis=0) - half, pts.max(axis=0) + half
