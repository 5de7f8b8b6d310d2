"""Can a scan be judged? Is it CT, and does it cover the adrenal region — and where, roughly, are the glands.

Used before a verdict so that a scan the model cannot judge gets "not assessable" with the reason,
never a guess. Locating the region is a landmark heuristic (fallback when no proposal is available):
the adrenal glands lie at the lung bases, either side of the spine, anterior to it. The lungs are the
large air regions inside the body; when the scan has no lung base above abdominal tissue (chest-only),
or no lungs at all to anchor on, the region is reported as not covered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .geometry import Box, voxel_to_lps
from .volume import Volume

# Box around each gland, relative to the lung base (z) and the spine (x, y), mm. Adrenals span roughly
# 45 mm below to 15 mm above the lowest lung voxel, 15-65 mm lateral of the midline, anterior of the spine.
Z_BELOW_LUNG_BASE, Z_ABOVE_LUNG_BASE = 55.0, 25.0
X_MEDIAL, X_LATERAL = 0.0, 80.0
Y_ANTERIOR, Y_POSTERIOR = 90.0, 10.0
MIN_CAUDAL_MARGIN = 30.0  # mm of scan needed below the lung base to see the glands
LUNG_MIN_ML, LUNG_MIN_MEAN_HU = 10.0, -860.0


@dataclass
class Region:
    assessable: bool
    reason: str = ""
    boxes: dict[str, Box] | None = None  # {"R": Box, "L": Box}
    lung_base_z: float | None = None


def check_ct(volume: Volume, modality: str | None = None) -> str:
    """'' when the volume looks like CT in Hounsfield units, else the reason it is not judged."""
    if modality and modality.upper() not in ("CT", ""):
        return f"not CT: modality is {modality}"
    a = volume.array
    if a.ndim != 3 or min(a.shape) < 3:
        return f"not a 3D volume: shape {a.shape}"
    sample = a[:: max(1, a.shape[0] // 16), ::4, ::4].astype(np.float32)
    air = np.mean(sample < -500)
    if sample.min() > -500 or air < 0.02:
        return "not CT: no air in Hounsfield units (values from %.0f to %.0f)" % (sample.min(), sample.max())
    soft = np.mean((sample > -150) & (sample < 250))
    if soft < 0.05:
        return "not CT: too little soft tissue in the Hounsfield range"
    return ""


def _body_mask(a: np.ndarray) -> np.ndarray:
    body = a > -400
    body = ndimage.binary_opening(body, structure=np.ones((1, 3, 3), bool))
    lab, n = ndimage.label(body)
    if n == 0:
        return body
    sizes = ndimage.sum(body, lab, index=np.arange(1, n + 1))
    body = lab == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def locate_adrenal_region(volume: Volume, step_mm: float = 3.0) -> Region:
    """Boxes around both adrenal glands from landmarks, or why the region is not covered."""
    spacing = volume.spacing  # i, j, k
    zoom = np.maximum(1, np.round(step_mm / np.asarray(spacing)[::-1])).astype(int)  # k, j, i strides
    a = volume.array[:: zoom[0], :: zoom[1], :: zoom[2]]
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] * zoom[::-1][None, :]
    z_of_k = voxel_to_lps(affine, np.stack([np.zeros(a.shape[0]), np.zeros(a.shape[0]), np.arange(a.shape[0])], 1))[:, 2]
    body = _body_mask(a)
    if body.sum() == 0:
        return Region(False, "no body in the field of view")
    air = (a < -400) & body
    lab, n = ndimage.label(air)
    if n == 0:
        return Region(False, "adrenal region not located: no lungs in the field of view to anchor on")
    voxel_ml = float(np.prod(np.asarray(spacing) * zoom[::-1])) / 1000.0
    index = np.arange(1, n + 1)
    sizes = ndimage.sum(air, lab, index=index) * voxel_ml
    mean_hu = ndimage.mean(a, lab, index=index)
    # lung parenchyma (vessels, septa) averages well above the -1000 HU of bowel gas
    is_lung = (sizes >= LUNG_MIN_ML) & (mean_hu >= LUNG_MIN_MEAN_HU)
    lungs = np.isin(lab, index[is_lung])
    if not lungs.any():
        return Region(False, "adrenal region not located: no lungs in the field of view to anchor on")
    per_slice = lungs.sum(axis=(1, 2)) * float(np.prod((np.asarray(spacing) * zoom[::-1])[:2])) / 100.0  # cm^2
    has_lung = per_slice >= 1.0
    ks = np.flatnonzero(has_lung)
    lung_z = z_of_k[ks]
    base_z = float(lung_z.min())
    scan_bottom = float(z_of_k.min())
    if base_z - scan_bottom < MIN_CAUDAL_MARGIN:
        return Region(False, f"adrenal region not covered: the scan ends {base_z - scan_bottom:.0f} mm below the "
                             f"lung bases (chest only?)", lung_base_z=base_z)
    # spine: bone near the midline in the slices of the region
    in_region = (z_of_k >= base_z - Z_BELOW_LUNG_BASE) & (z_of_k <= base_z + Z_ABOVE_LUNG_BASE)
    sub_body = body[in_region]
    kk, jj, ii = np.nonzero(sub_body)
    k_idx = np.flatnonzero(in_region)[kk]
    pts = voxel_to_lps(affine, np.stack([ii, jj, k_idx], 1))
    x_mid = float(np.median(pts[:, 0]))
    bone = (a > 200) & body & in_region[:, None, None]
    kb, jb, ib = np.nonzero(bone)
    bone_pts = voxel_to_lps(affine, np.stack([ib, jb, kb], 1)) if kb.size else np.empty((0, 3))
    central = bone_pts[np.abs(bone_pts[:, 0] - x_mid) < 25] if bone_pts.size else bone_pts
    if central.shape[0] < 10:
        return Region(False, "adrenal region not located: no spine found at the lung bases", lung_base_z=base_z)
    x_spine = float(np.median(central[:, 0]))
    y_spine = float(np.percentile(central[:, 1], 25))  # anterior part of the vertebra (LPS: y grows posterior)
    z_lo, z_hi = base_z - Z_BELOW_LUNG_BASE, base_z + Z_ABOVE_LUNG_BASE
    y_lo, y_hi = y_spine - Y_ANTERIOR, y_spine + Y_POSTERIOR
    boxes = {
        "R": Box((x_spine - X_LATERAL, y_lo, z_lo), (x_spine - X_MEDIAL, y_hi, z_hi)),
        "L": Box((x_spine + X_MEDIAL, y_lo, z_lo), (x_spine + X_LATERAL, y_hi, z_hi)),
    }
    return Region(True, "", boxes, base_z)
