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
    vector in mm from one slice's position to the next."""
    row_dir = np.asarray(orientation[:3], float)  # direction of increasing column index i
    col_dir = np.asarray(orientation[3:6], float)  # direction of increasing row index j
    affine = np.eye(4)
    affine[:3, 0] = row_dir * float(pixel_spacing[1])
    affine[:3, 1] = col_dir * float(pixel_spacing[0])
    affine[:3, 2] = np.asarray(slice_step, float)
    affine[:3, 3] = np.asarray(position, float)
    return affine


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
