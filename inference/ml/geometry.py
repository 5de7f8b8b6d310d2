"""Patient-coordinate geometry: the one place where millimetres (LPS, as DICOM has it) and voxel
indices are converted.

Conventions used throughout the project:
- a volume's array is indexed ``[k, j, i]`` (slice, row, column);
- its ``affine`` (4x4) maps the voxel index ``(i, j, k, 1)`` to LPS millimetres ``(x, y, z, 1)``;
- a box is axis-aligned in LPS: ``lps_min``/``lps_max`` ``[x, y, z]`` with min <= max.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_dicom(
    position: Sequence[float], orientation: Sequence[float], pixel_spacing: Sequence[float], slice_step: Sequence[float]
) -> np.ndarray:
    """Affine from DICOM tags: ImagePositionPatient of the first slice, ImageOrientationPatient
    (row direction cosines then column), PixelSpacing ``[row spacing, column spacing]`` and the
    vector in mm from one slice's position to the next. The direction cosines are made unit vectors (written to
    2 or 3 decimals, 0.97\\-0.26 is 1.0042 long: 2 mm too far at the far side of a 500 mm field of view), so a
    pixel step is PixelSpacing whatever their rounding."""
    row_dir = unit_cosines(orientation[:3])  # direction of increasing column index i
    col_dir = unit_cosines(orientation[3:6])  # direction of increasing row index j
    affine = np.eye(4)
    affine[:3, 0] = row_dir * float(pixel_spacing[1])
    affine[:3, 1] = col_dir * float(pixel_spacing[0])
    affine[:3, 2] = np.asarray(slice_step, float)
    affine[:3, 3] = np.asarray(position, float)
    return affine


def unit_cosines(cosines: Sequence[float]) -> np.ndarray:
    """Three direction cosines (one half of ImageOrientationPatient) as a unit vector."""
    v = np.asarray(cosines, float)
    return v / (np.linalg.norm(v) or 1.0)


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing ``[i, j, k]`` in mm."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def voxel_to_lps(affine: np.ndarray, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
    """Voxel indices ``(..., 3)`` as ``(i, j, k)`` to LPS mm ``(..., 3)``."""
    ijk = np.asarray(ijk, float)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def lps_to_voxel(affine: np.ndarray, xyz: np.ndarray | Sequence[float]) -> np.ndarray:
    """LPS mm ``(..., 3)`` to continuous voxel indices ``(i, j, k)``."""
    inv = np.linalg.inv(np.asarray(affine, float))
    xyz = np.asarray(xyz, float)
    return xyz @ inv[:3, :3].T + inv[:3, 3]


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in LPS mm."""

    lps_min: tuple[float, float, float]
    lps_max: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo, hi = np.minimum(self.lps_min, self.lps_max), np.maximum(self.lps_min, self.lps_max)
        object.__setattr__(self, "lps_min", tuple(float(v) for v in lo))
        object.__setattr__(self, "lps_max", tuple(float(v) for v in hi))

    @property
    def size_mm(self) -> np.ndarray:
        return np.asarray(self.lps_max) - np.asarray(self.lps_min)

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.lps_min) + np.asarray(self.lps_max)) / 2

    def contains(self, xyz: np.ndarray, tol_mm: float = 1e-6) -> np.ndarray:
        xyz = np.asarray(xyz, float)
        return np.all((xyz >= np.asarray(self.lps_min) - tol_mm) & (xyz <= np.asarray(self.lps_max) + tol_mm), axis=-1)

    def expanded(self, margin_mm: float | Sequence[float]) -> Box:
        m = np.broadcast_to(np.asarray(margin_mm, float), (3,))
        return Box(tuple(np.asarray(self.lps_min) - m), tuple(np.asarray(self.lps_max) + m))

    def to_dict(self) -> dict:
        return {"lps_min": list(self.lps_min), "lps_max": list(self.lps_max)}

    @classmethod
    def from_points(cls, xyz: np.ndarray) -> Box:
        xyz = np.asarray(xyz, float).reshape(-1, 3)
        return cls(tuple(xyz.min(axis=0)), tuple(xyz.max(axis=0)))


def box_to_voxels(affine: np.ndarray, shape_kji: Sequence[int], box: Box) -> tuple[list[int], list[int]]:
    """The inclusive voxel index range ``([i, j, k] min, [i, j, k] max)`` of voxel centres inside
    ``box``, clipped to the volume (empty ranges come back with min > max)."""
    corners = np.array(
        [[x, y, z] for x in (box.lps_min[0], box.lps_max[0]) for y in (box.lps_min[1], box.lps_max[1])
         for z in (box.lps_min[2], box.lps_max[2])]
    )
    ijk = lps_to_voxel(affine, corners)
    lo = np.ceil(ijk.min(axis=0) - 1e-6).astype(int)
    hi = np.floor(ijk.max(axis=0) + 1e-6).astype(int)
    size_ijk = np.asarray(shape_kji)[::-1]
    lo = np.clip(lo, 0, size_ijk - 1)
    hi = np.clip(hi, -1, size_ijk - 1)
    return lo.tolist(), hi.tolist()


def voxels_to_box(affine: np.ndarray, voxel_min: Sequence[int], voxel_max: Sequence[int]) -> Box:
    """The LPS box spanned by the centres of an inclusive voxel range."""
    lo, hi = np.asarray(voxel_min, float), np.asarray(voxel_max, float)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return Box.from_points(voxel_to_lps(affine, corners))


def volume_extent(affine: np.ndarray, shape_kji: Sequence[int]) -> Box:
    """The LPS box spanned by the volume's voxel centres."""
    k, j, i = shape_kji
    return voxels_to_box(affine, [0, 0, 0], [i - 1, j - 1, k - 1])


# -- the store's canonical voxel axes ---------------------------------------------------------------------
AXIAL_MIN_COS = 0.8  # |slice axis . z| at least this for a volume to count as axial (gantry tilts up to ~35 deg)


def canonical_index_map(affine: np.ndarray, shape_ijk: Sequence[int]) -> np.ndarray:
    """How the store's canonical voxel grid reads an existing one, without resampling.

    The canonical grid is the nearest to LPS+: voxel axis ``i`` runs towards patient left (+x), ``j`` towards
    posterior (+y), ``k`` towards superior (+z), so a volume's array ``[k, j, i]`` holds axial slices on its first
    axis whatever the source's axis order (RAS, LPS, slice-axis-first, flips, any permutation). A standard axial
    DICOM series (orientation ``1,0,0,0,1,0``, slices ascending) is already canonical.

    Each canonical axis takes the source axis whose direction has the largest component along that patient axis
    (greedily, largest component first, as nibabel's ``io_orientation``), flipped when that component is negative.

    Returns the integer 4x4 ``T`` with ``source_ijk = T @ canonical_ijk`` (homogeneous); the canonical affine is
    ``affine @ T`` and the canonical shape ``shape_ijk`` permuted. Raises ValueError for a singular affine.
    """
    affine = np.asarray(affine, float)
    directions = affine[:3, :3]
    norms = np.linalg.norm(directions, axis=0)
    if np.any(norms < 1e-9) or abs(np.linalg.det(directions)) < 1e-12:
        raise ValueError("singular affine: voxel axes do not span 3D space")
    cosines = np.abs(directions / norms)  # [world axis, voxel axis]
    source_of = [-1, -1, -1]  # canonical axis (= world axis) -> source voxel axis
    free_world, free_voxel = {0, 1, 2}, {0, 1, 2}
    for flat in np.argsort(-cosines, axis=None, kind="stable"):
        w, a = divmod(int(flat), 3)
        if w in free_world and a in free_voxel:
            source_of[w] = a
            free_world.discard(w)
            free_voxel.discard(a)
    t = np.zeros((4, 4), int)
    t[3, 3] = 1
    for w, a in enumerate(source_of):
        if directions[w, a] >= 0:
            t[a, w] = 1
        else:
            t[a, w] = -1
            t[a, 3] = int(shape_ijk[a]) - 1
    return t


def slice_axis_cosine(affine: np.ndarray) -> float:
    """``|cos|`` of the angle between voxel axis ``k`` and the patient's z axis (1 for an axial volume)."""
    k = np.asarray(affine, float)[:3, 2]
    return float(abs(k[2]) / (np.linalg.norm(k) or 1.0))


def affines_differ_mm(a: np.ndarray, b: np.ndarray, shape_ijk: Sequence[int]) -> float:
    """The largest distance in mm between where two affines put the corners of a ``shape_ijk`` grid."""
    n = np.asarray(shape_ijk, float) - 1
    corners = np.array([[x, y, z] for x in (0, n[0]) for y in (0, n[1]) for z in (0, n[2])])
    return float(np.linalg.norm(voxel_to_lps(a, corners) - voxel_to_lps(b, corners), axis=1).max())
