"""Coarse anatomy of a canonical scan (``canonical.Canonical``): body, vertebral column per slice, and a
per-slice descriptor of tissue classes in a frame centred on the spine.

- Body: the largest connected region above -400 HU inside the field of view, holes filled per slice.
- Spine: the bony column that runs along z (the in-plane position where bone is present on the most slices,
  posterior half of the body), then per slice the centroid of bone within ``SPINE_RADIUS_MM`` of it, smoothed
  along z; slices without bone there take the nearest found position.
- Descriptor of a slice: for a ``CELL_MM`` grid of cells spanning ``DESC_X_MM`` x ``DESC_Y_MM`` about the spine,
  the fraction of each tissue class (outside the body, air/lung inside, fat, soft tissue, bone); cells outside
  the field of view have weight 0. Slices are compared by the weighted mean squared difference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .canonical import Canonical

BONE_HU = 180.0
SPINE_RADIUS_MM = 40.0
CELL_MM = 25.0
DESC_X_MM = (-150.0, 150.0)  # patient right .. left of the spine
DESC_Y_MM = (-225.0, 75.0)  # anterior .. posterior of the spine
CLASS_EDGES_HU = (-400.0, -30.0, BONE_HU)  # air | fat | soft tissue | bone (plus "outside the body")
N_CLASSES = 5


@dataclass
class SliceAnatomy:
    """Per slice ``k`` of a canonical scan: ``spine_xy[k]`` LPS mm (NaN rows: no body on that slice),
    ``desc[k]`` (cells x classes, flattened) and ``weight[k]`` (per cell, 0 = outside the field of view)."""

    body: np.ndarray
    spine_xy: np.ndarray
    found: np.ndarray  # slices where spine bone was seen (not filled in)
    desc: np.ndarray
    weight: np.ndarray
    one_side: bool = False  # the field of view cuts the trunk within ``ONE_SIDE_MM`` of the spine: a scan of one side


def body_mask(c: Canonical) -> np.ndarray:
    """Largest connected region above -400 HU inside the field of view, holes filled slice by slice."""
    body = ndimage.binary_opening((c.hu > -400) & c.valid, structure=np.ones((1, 3, 3), bool))
    lab, n = ndimage.label(body)
    if n == 0:
        return body
    sizes = np.bincount(lab.ravel())[1:]
    body = lab == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


CUT_SHARE = 0.5  # of body slices reaching the field of view's side edge, for the trunk to count as cut there
ONE_SIDE_MM = 40.0  # a cut this close to the spine's centre runs through the vertebra: a scan of one side


def _cut_edges(c: Canonical, body: np.ndarray, kk: np.ndarray) -> list[float]:
    """x (LPS mm) of each side edge of the field of view where it cuts the trunk on most slices (a scan of one
    side, or a tight field of view): the body then reaches the first or last valid column there."""
    hits, edges = np.zeros(2), np.zeros(2)
    for k in kk:
        cols = np.nonzero(c.valid[k].any(axis=0))[0]
        bc = np.nonzero(body[k].any(axis=0))[0]
        hits += (bc[0] <= cols[0], bc[-1] >= cols[-1])
        edges += (cols[0], cols[-1])
    x = c.origin[0] + c.step * edges / max(len(kk), 1)
    return [float(x[e]) for e in range(2) if hits[e] >= CUT_SHARE * len(kk)]


def find_spine(c: Canonical, body: np.ndarray, cut_at_side: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per slice ``(x, y)`` of the vertebral column (LPS mm) and whether it was seen on that slice;
    ``cut_at_side``: the field of view cuts the trunk at its right or left side (:func:`_cut_edges`)."""
    nz = c.shape[0]
    xy = np.full((nz, 2), np.nan)
    found = np.zeros(nz, bool)
    bone = (c.hu > BONE_HU) & body
    if not bone.any() or not body.any():
        return xy, found
    # the column: where bone is found on the most slices, weighted to the posterior half of the body
    share = ndimage.uniform_filter(bone.mean(axis=0, dtype=np.float32), size=max(3, int(round(15 / c.step))))
    # the trunk's centre line (median over slices of each slice's body centroid): arms and table lie aside
    kk = np.nonzero(body.any(axis=(1, 2)))[0]
    cj = np.median([np.nonzero(body[k].any(axis=1))[0].mean() for k in kk])
    ci = np.median([np.nonzero(body[k].any(axis=0))[0].mean() for k in kk])
    jj, ii = np.ogrid[: c.shape[1], : c.shape[2]]
    # ... unless the field of view cuts the trunk at the side (a scan of one side): its centroid is then not the
    # midline, and the column is found by its extent along z alone
    x_prior = 1.0 if cut_at_side else np.exp(-0.5 * (((ii - ci) * c.step) / 45.0) ** 2)
    share = share * x_prior * np.where(jj >= cj - 20 / c.step, 1.0, 0.3)
    j0, i0 = np.unravel_index(int(np.argmax(share)), share.shape)
    r = SPINE_RADIUS_MM / c.step
    near = (jj - j0) ** 2 + (ii - i0) ** 2 <= r * r
    for k in range(nz):
        j, i = np.nonzero(bone[k] & near)
        if len(j) >= 3:
            xy[k] = c.origin[:2] + c.step * np.array([i.mean(), j.mean()])
            found[k] = True
    if found.any():
        ks = np.nonzero(found)[0]
        for d in range(2):  # median over ~5 slices, then nearest fill
            v = xy[ks, d]
            xy[ks, d] = ndimage.median_filter(v, size=min(5, len(v)), mode="nearest")
            xy[:, d] = np.interp(np.arange(nz), ks, xy[ks, d])
    return xy, found


def descriptors(c: Canonical, body: np.ndarray, spine_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tissue-class fractions per cell about the spine, per slice, and the cells' weights."""
    nz, ny, nx = c.shape
    ncx = int(round((DESC_X_MM[1] - DESC_X_MM[0]) / CELL_MM))
    ncy = int(round((DESC_Y_MM[1] - DESC_Y_MM[0]) / CELL_MM))
    ncell = ncx * ncy
    cls = np.digitize(c.hu, CLASS_EDGES_HU).astype(np.int64) + 1  # 1 air .. 4 bone
    cls[~body] = 0
    xs = c.origin[0] + c.step * np.arange(nx)
    ys = c.origin[1] + c.step * np.arange(ny)
    desc = np.zeros((nz, ncell * N_CLASSES), np.float32)
    weight = np.zeros((nz, ncell), np.float32)
    for k in range(nz):
        if np.isnan(spine_xy[k, 0]):
            continue
        cx = np.floor((xs - spine_xy[k, 0] - DESC_X_MM[0]) / CELL_MM).astype(int)
        cy = np.floor((ys - spine_xy[k, 1] - DESC_Y_MM[0]) / CELL_MM).astype(int)
        okx, oky = (cx >= 0) & (cx < ncx), (cy >= 0) & (cy < ncy)
        cell = cy[oky][:, None] * ncx + cx[okx][None, :]
        v = c.valid[k][np.ix_(oky, okx)]
        counts = np.bincount((cell[v] * N_CLASSES + cls[k][np.ix_(oky, okx)][v]).ravel(),
                             minlength=ncell * N_CLASSES).reshape(ncell, N_CLASSES).astype(np.float32)
        total = counts.sum(axis=1)
        full = (CELL_MM / c.step) ** 2
        w = np.clip(total / full, 0, 1)
        w[w < 0.5] = 0.0
        frac = counts / np.maximum(total, 1)[:, None]
        desc[k] = frac.ravel()
        weight[k] = w
    return desc, weight


def slice_anatomy(c: Canonical) -> SliceAnatomy:
    body = body_mask(c)
    kk = np.nonzero(body.any(axis=(1, 2)))[0]
    edges = _cut_edges(c, body, kk) if len(kk) else []
    spine_xy, found = find_spine(c, body, bool(edges))
    desc, weight = descriptors(c, body, spine_xy)
    spine_x = float(np.nanmedian(spine_xy[:, 0])) if found.any() else np.nan
    one_side = any(abs(x - spine_x) <= ONE_SIDE_MM for x in edges)
    return SliceAnatomy(body=body, spine_xy=spine_xy, found=found, desc=desc, weight=weight, one_side=one_side)
