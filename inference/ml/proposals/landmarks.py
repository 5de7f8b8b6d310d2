"""Landmarks of the adrenal region found in a CT without any model: lung bases, spine, body.

Everything runs on a copy subsampled to about ``STEP_MM`` (strided, no interpolation), so a 512x512x300
series takes well under a second. Positions come back in LPS millimetres (x grows to patient left,
y grows posterior, z grows superior).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import volume_extent, voxel_to_lps
from ..volume import Volume

STEP_MM = 3.0
LUNG_MIN_ML, LUNG_MIN_MEAN_HU = 10.0, -900.0  # parenchyma (vessels, septa) averages above bowel gas (-950..-1000)
LUNG_MIN_CM2 = 1.0  # a slice "has lung" on a side with at least this much lung
BONE_HU = 200.0
SPINE_HALF_WIDTH_MM = 25.0
POSTERIOR_FRACTION = 0.6  # a lung reaches behind this fraction of the body's antero-posterior depth


@dataclass
class Landmarks:
    """What the proposer anchors on; ``None`` fields were not found (``problem`` says why)."""

    scan_z: tuple[float, float]  # lowest and highest slice centre, mm
    lung_base_z: dict[str, float] | None = None  # per side "R"/"L": lowest slice with lung on that side
    spine_x: float | None = None  # midline of the vertebral column
    spine_y_anterior: float | None = None  # anterior edge of the vertebral body
    problem: str = ""


def subsample(volume: Volume, step_mm: float = STEP_MM) -> tuple[np.ndarray, np.ndarray]:
    """A strided view of the array at roughly ``step_mm`` and the affine of that view."""
    strides_kji = np.maximum(1, np.round(step_mm / np.asarray(volume.spacing)[::-1])).astype(int)
    a = volume.array[:: strides_kji[0], :: strides_kji[1], :: strides_kji[2]]
    affine = np.asarray(volume.affine, float).copy()
    affine[:3, :3] = affine[:3, :3] * strides_kji[::-1][None, :]
    return a, affine


def body_mask(a: np.ndarray) -> np.ndarray:
    """The largest connected region above -400 HU, holes (lungs, bowel gas) filled slice by slice."""
    body = ndimage.binary_opening(a > -400, structure=np.ones((1, 3, 3), bool))
    lab, n = ndimage.label(body)
    if n == 0:
        return body
    sizes = ndimage.sum(body, lab, index=np.arange(1, n + 1))
    body = lab == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def _points(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    k, j, i = np.nonzero(mask)
    return voxel_to_lps(affine, np.stack([i, j, k], 1)) if k.size else np.empty((0, 3))


def _posterior_reach(affine: np.ndarray, lab: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The largest LPS y (most posterior point) of each labelled component."""
    out = np.full(len(index), -np.inf)
    objects = ndimage.find_objects(lab)
    for n, c in enumerate(index):
        sl = objects[c - 1]
        if sl is None:
            continue
        k, j, i = np.nonzero(lab[sl] == c)
        ijk = np.stack([i + sl[2].start, j + sl[1].start, k + sl[0].start], 1)
        out[n] = voxel_to_lps(affine, ijk)[:, 1].max()
    return out


def find_landmarks(volume: Volume, step_mm: float = STEP_MM) -> Landmarks:
    """Lung bases per side and the spine at their level."""
    a, affine = subsample(volume, step_mm)
    n_k = a.shape[0]
    z_of_k = voxel_to_lps(affine, np.stack([np.zeros(n_k), np.zeros(n_k), np.arange(n_k)], 1))[:, 2]
    extent = volume_extent(volume.affine, volume.shape)  # all slices, not only the strided ones
    marks = Landmarks(scan_z=(extent.lps_min[2], extent.lps_max[2]))
    body = body_mask(a)
    if not body.any():
        marks.problem = "no body in the field of view"
        return marks
    voxel_mm = np.linalg.norm(affine[:3, :3], axis=0)  # i, j, k
    air = (a < -400) & body
    lab, n = ndimage.label(air)
    index = np.arange(1, n + 1)
    if n:
        sizes = ndimage.sum(air, lab, index=index) * float(np.prod(voxel_mm)) / 1000.0
        mean_hu = ndimage.mean(a, lab, index=index)
        # lung bases reach the posterior (dependent) part of the body; bowel gas rises anterior
        body_y = _points(affine, body[:: max(1, n_k // 20)])[:, 1]
        y_cut = float(np.percentile(body_y, 1) + POSTERIOR_FRACTION * (np.percentile(body_y, 99) - np.percentile(body_y, 1)))
        reach = _posterior_reach(affine, lab, index)
        candidates = index[(sizes >= LUNG_MIN_ML) & (mean_hu >= LUNG_MIN_MEAN_HU) & (reach >= y_cut)]
    else:
        candidates = index
    if candidates.size == 0:
        marks.problem = "no lungs in the field of view to anchor on"
        return marks
    # midline: the body's median x and y over the slices around the lower end of the lung candidates
    cand_pts = _points(affine, np.isin(lab, candidates))
    base_all = float(np.percentile(cand_pts[:, 2], 5))
    near = np.abs(z_of_k - base_all) <= 60
    body_pts = _points(affine, body & near[:, None, None])
    x_mid, y_mid = float(np.median(body_pts[:, 0])), float(np.median(body_pts[:, 1]))
    # each lung is the largest candidate on its side (bowel gas is smaller, and below the diaphragm)
    centroids = np.asarray(ndimage.center_of_mass(air, lab, candidates)).reshape(-1, 3)  # k, j, i
    cx = voxel_to_lps(affine, centroids[:, ::-1])[:, 0]
    size_of = dict(zip(index, sizes)) if n else {}
    lungs_by_side = {}
    for side, on_side in (("R", cx < x_mid), ("L", cx >= x_mid)):
        ids = candidates[on_side]
        if ids.size:
            lungs_by_side[side] = int(ids[np.argmax([size_of[i] for i in ids])])
    if not lungs_by_side:
        marks.problem = "no lungs in the field of view to anchor on"
        return marks
    lung_pts = _points(affine, np.isin(lab, list(lungs_by_side.values())))
    base_all = float(lung_pts[:, 2].min())
    # spine: bone near the midline, posterior half of the body (the sternum is anterior)
    region = (z_of_k >= base_all - 70) & (z_of_k <= base_all + 20)
    bone = _points(affine, (a > BONE_HU) & body & region[:, None, None])
    central = bone[(np.abs(bone[:, 0] - x_mid) < SPINE_HALF_WIDTH_MM) & (bone[:, 1] > y_mid - 20)] if bone.size else bone
    if central.shape[0] < 10:
        marks.problem = "no spine found at the lung bases"
        return marks
    marks.spine_x = float(np.median(central[:, 0]))
    marks.spine_y_anterior = float(np.percentile(central[:, 1], 5))
    cm2 = float(voxel_mm[0] * voxel_mm[1]) / 100.0
    bases = {}
    for side in ("R", "L"):
        if side not in lungs_by_side:  # one lung only (e.g. after pneumonectomy): use the other's base
            continue
        pts = _points(affine, lab == lungs_by_side[side])
        zs, counts = np.unique(np.round(pts[:, 2], 3), return_counts=True)
        ok = zs[counts * cm2 >= LUNG_MIN_CM2]
        bases[side] = float(ok.min()) if ok.size else float(pts[:, 2].min())
    for side in ("R", "L"):
        bases.setdefault(side, min(bases.values()))
    marks.lung_base_z = bases
    return marks
