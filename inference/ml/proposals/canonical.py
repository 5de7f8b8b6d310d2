"""A scan on a coarse LPS-aligned grid: the frame every localisation step works in.

Whatever the stored orientation (flipped, permuted or oblique axes), the volume is resampled (SimpleITK,
linear) onto a grid whose axes are LPS x, y, z at ``step_mm`` (default 3 mm), after block-averaging axes
finer than half the step (so noise does not alias). Voxels outside the scanned field of view are marked
invalid, not air: "not in the field of view" and "air" are different findings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..geometry import spacing_of, volume_extent
from ..volume import Volume, sitk_image

STEP_MM = 3.0
OUTSIDE_HU = -3000.0  # resampling fill for points outside the field of view (below any CT value)


@dataclass
class Canonical:
    """``hu`` float32 ``[z, y, x]`` on an LPS-aligned grid; ``valid`` bool, inside the field of view.
    Voxel ``(x, y, z)`` index ``ijk`` sits at ``origin + step * ijk`` mm."""

    hu: np.ndarray
    valid: np.ndarray
    origin: np.ndarray  # LPS mm of voxel (0, 0, 0)
    step: float
    z_range: tuple[float, float] | None = None  # first and last slice centre of the scanned volume, mm

    @property
    def scanned_z(self) -> tuple[float, float]:
        """The scanned volume's z range (slice centres), mm; the grid's own when not recorded."""
        return self.z_range or (float(self.z_of(0)), float(self.z_of(self.shape[0] - 1)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]

    def z_of(self, k: np.ndarray | int) -> np.ndarray:
        return self.origin[2] + self.step * np.asarray(k, float)

    def to_mm(self, zyx: np.ndarray) -> np.ndarray:
        """Indices ``(..., 3)`` as ``(z, y, x)`` -> LPS mm ``(..., 3)`` as ``(x, y, z)``."""
        return self.origin + self.step * np.asarray(zyx, float)[..., ::-1]

    def to_index(self, xyz: np.ndarray) -> np.ndarray:
        """LPS mm ``(..., 3)`` -> continuous indices ``(..., 3)`` as ``(z, y, x)``."""
        return ((np.asarray(xyz, float) - self.origin) / self.step)[..., ::-1]

    def sitk_image(self) -> sitk.Image:
        img = sitk.GetImageFromArray(self.hu)
        img.SetSpacing((self.step,) * 3)
        img.SetOrigin(tuple(float(v) for v in self.origin))
        return img


def _block_average(array: np.ndarray, factors_kji: np.ndarray) -> np.ndarray:
    a = array
    for axis, f in enumerate(factors_kji):
        f = int(f)
        if f <= 1:
            continue
        n = (a.shape[axis] // f) * f
        a = np.take(a, np.arange(n), axis=axis)
        shape = a.shape[:axis] + (n // f, f) + a.shape[axis + 1:]
        a = a.reshape(shape).mean(axis=axis + 1, dtype=np.float32)
    return a.astype(np.float32, copy=False)


def to_sitk(volume: Volume, step_mm: float = STEP_MM) -> sitk.Image:
    """The volume as a SimpleITK image with its real geometry, block-averaged towards ``step_mm``."""
    affine = np.asarray(volume.affine, float)
    factors = np.maximum(1, np.floor(step_mm / (2 * spacing_of(affine)))).astype(int)  # i, j, k
    arr = _block_average(np.asarray(volume.array), factors[::-1])
    block = affine.copy()  # one voxel per block of f: f times as long, centred (f - 1) / 2 voxels from the first
    block[:3, :3] = affine[:3, :3] * factors[None, :]
    block[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((factors - 1) / 2.0)
    return sitk_image(arr, block)


def canonical(volume: Volume, step_mm: float = STEP_MM) -> Canonical:
    """The volume resampled onto an LPS-aligned ``step_mm`` grid covering its field of view."""
    ext = volume_extent(volume.affine, volume.shape)
    lo = np.asarray(ext.lps_min)
    size = np.maximum(1, np.floor((np.asarray(ext.lps_max) - lo) / step_mm).astype(int) + 1)
    src = to_sitk(volume, step_mm)
    ref = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    ref.SetSpacing((step_mm,) * 3)
    ref.SetOrigin(tuple(float(v) for v in lo))
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, OUTSIDE_HU, sitk.sitkFloat32)
    hu = sitk.GetArrayFromImage(out)
    valid = hu > OUTSIDE_HU / 2
    hu[~valid] = -1024.0
    return Canonical(hu=hu, valid=valid, origin=lo, step=float(step_mm), z_range=(float(lo[2]), float(ext.lps_max[2])))
