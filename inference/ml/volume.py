"""A CT volume in Hounsfield units with its LPS affine, and its NIfTI storage (written atomically).

The store keeps every scan on LPS-aligned voxel axes (``to_store_grid``): permuted and flipped when its axes
already are patient axes (no interpolation), resampled when they are oblique (a gantry-tilted DICOM series, a
rotated NIfTI), so every consumer (viewer, proposals, crops, 2.5D images) may read a voxel row as a patient axis.
"""
from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path
from .geometry import LPS_TO_RAS, Box, box_to_voxels, canonical_index_map, spacing_of, volume_extent
from .limits import ExtensionsTooLarge, TooManyVoxels, check_nifti_extensions, check_voxels


@dataclass
class Volume:
    """HU array indexed ``[k, j, i]`` and the affine mapping ``(i, j, k)`` to LPS mm."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """``[i, j, k]`` spacing in mm."""
        return spacing_of(self.affine)


def save_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write int16 HU NIfTI (.nii.gz) atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if volume.array.dtype == np.int16:  # already HU int16: no float copies (a 512x512x600 series is 315 MB)
        data = volume.array
    else:
        data = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    # [k, j, i] C-order is (i, j, k) Fortran order: the transpose is a view nibabel writes without a copy
    img = nib.Nifti1Image(np.asfortranarray(data.transpose(2, 1, 0)), LPS_TO_RAS @ volume.affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


class UnreadableVolume(ValueError):
    """A NIfTI file that is there but cannot be read: not NIfTI, truncated, or its compression corrupt."""


@contextmanager
def _reading(path: str | os.PathLike):
    """Reading ``path``: nibabel's, gzip's and numpy's errors on a damaged file become one UnreadableVolume naming
    the file (a missing file stays FileNotFoundError, too many voxels TooManyVoxels)."""
    try:
        yield
    except (FileNotFoundError, TooManyVoxels, ExtensionsTooLarge):
        raise
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError) as exc:
        why = str(exc).replace(str(Path(path).parent) + os.sep, "")  # the file's name, not where it lies
        raise UnreadableVolume(f"the stored file {Path(path).name} cannot be read ({type(exc).__name__}: {why}); "
                               "re-import the scan") from exc


def load_nifti(path: str | os.PathLike, dtype=np.int16) -> Volume:
    """Read a NIfTI file into a Volume (array ``[k, j, i]``, LPS affine). Raises ``TooManyVoxels`` (a
    ValueError) before reading data when the header declares more voxels than the cap, ``UnreadableVolume`` (a
    ValueError) for a damaged file, FileNotFoundError for a missing one."""
    with _reading(path):
        check_nifti_extensions(path)
        img = nib.load(str(path))
        check_voxels(img.shape, f"NIfTI {Path(path).name}")
        data = np.asanyarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), LPS_TO_RAS @ img.affine)


def to_canonical(volume: Volume) -> tuple[Volume, np.ndarray]:
    """The same voxels on the store's canonical axes (``geometry.canonical_index_map``: i -> L, j -> P, k -> S),
    by axis permutation and flips only (no interpolation, values untouched).

    Returns ``(volume, T)`` with ``T`` the integer 4x4 mapping canonical voxel indices to the input's
    (``input_ijk = T @ canonical_ijk``); ``T`` is the identity, and the input returned as is, when it already
    is canonical. Raises ValueError for a singular affine.
    """
    shape_ijk = volume.shape[::-1]
    t = canonical_index_map(volume.affine, shape_ijk)
    if np.array_equal(t, np.eye(4, dtype=int)):
        return volume, t
    data = volume.array.transpose(2, 1, 0)  # [i, j, k] view
    source_of = [int(np.flatnonzero(t[:3, w])[0]) for w in range(3)]
    data = data.transpose(source_of)
    flips = tuple(w for w in range(3) if t[source_of[w], w] < 0)
    if flips:
        data = np.flip(data, axis=flips)
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    return Volume(array, np.asarray(volume.affine, float) @ t), t


OBLIQUE_TOLERANCE = 1e-3  # largest sine between a voxel axis and its nearest patient axis stored without resampling
OUTSIDE_HU = -1024  # resampling fill outside the scanned field of view (air)
_RESAMPLE_CHUNK_VOXELS = 16_000_000  # output voxels resampled per slab (64 MB of float32)


def obliquity(affine: np.ndarray) -> float:
    """The sine of the largest angle between a voxel axis and the patient axis nearest to it: 0 when the voxel
    axes are LPS axes (up to order and sign)."""
    d = np.asarray(affine, float)[:3, :3]
    norms = np.linalg.norm(d, axis=0)
    if np.any(norms < 1e-9):
        raise ValueError("singular affine: voxel axes do not span 3D space")
    nearest = np.abs(d / norms).max(axis=0)
    return float(np.sqrt(np.clip(1.0 - nearest ** 2, 0.0, None)).max())


def sitk_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """``array`` ``[k, j, i]`` as a SimpleITK image placed by its voxel -> LPS mm ``affine`` (spacing, origin and
    direction cosines; SimpleITK's physical space is LPS as ours): the one conversion to SimpleITK."""
    affine = np.asarray(affine, float)
    spacing = spacing_of(affine)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    img.SetDirection(tuple(float(v) for v in (affine[:3, :3] / spacing[None, :]).ravel()))
    return img


def resample_to_lps(volume: Volume) -> Volume:
    """The volume resampled (SimpleITK, linear, ``OUTSIDE_HU`` outside the field of view) onto an LPS-aligned grid
    (i -> L, j -> P, k -> S) covering the box of its voxel centres: x and y at the finer of its two in-plane
    spacings, z at its slice spacing (the spacing of the voxel axis nearest to z). The output size is checked
    against the voxel cap (``TooManyVoxels``, a ValueError) before anything is allocated."""
    affine = np.asarray(volume.affine, float)
    t = canonical_index_map(affine, volume.shape[::-1])  # raises for a singular affine
    source_of = [int(np.flatnonzero(t[:3, w])[0]) for w in range(3)]  # patient axis -> nearest voxel axis
    spacing = spacing_of(affine)
    inplane = float(min(spacing[source_of[0]], spacing[source_of[1]]))
    step = np.array([inplane, inplane, float(spacing[source_of[2]])])
    ext = volume_extent(affine, volume.shape)
    lo, hi = np.asarray(ext.lps_min), np.asarray(ext.lps_max)
    size = (np.ceil((hi - lo) / step - 1e-6).astype(int) + 1).tolist()  # x, y, z: the last centre at or past hi
    check_voxels(size[::-1], "volume resampled from an oblique grid onto LPS axes (slices x rows x columns)")
    src = sitk_image(volume.array, affine)
    out = np.empty(size[::-1], np.int16)
    chunk = max(1, _RESAMPLE_CHUNK_VOXELS // (size[0] * size[1]))
    for z0 in range(0, size[2], chunk):
        n = min(chunk, size[2] - z0)
        ref = sitk.Image([size[0], size[1], n], sitk.sitkFloat32)
        ref.SetSpacing(tuple(float(s) for s in step))
        ref.SetOrigin(tuple(float(v) for v in (lo + [0.0, 0.0, z0 * step[2]])))
        slab = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, float(OUTSIDE_HU), sitk.sitkFloat32)
        out[z0:z0 + n] = np.clip(np.rint(sitk.GetArrayFromImage(slab)), -32768, 32767)
    new_affine = np.diag([*step, 1.0])
    new_affine[:3, 3] = lo
    return Volume(out, new_affine)


def to_store_grid(volume: Volume) -> tuple[Volume, np.ndarray, str]:
    """The volume on the store's LPS-aligned axes: ``(volume, T, note)``.

    Axes within ``OBLIQUE_TOLERANCE`` of patient axes: ``to_canonical`` (permutation and flips, values untouched;
    the input itself when already canonical), ``T`` its integer map and ``note`` empty. Oblique axes (gantry
    tilt, a rotated NIfTI): ``resample_to_lps``, ``T`` the float 4x4 with ``input_ijk = T @ store_ijk`` and
    ``note`` saying it was resampled and by how many degrees the axes were off. Raises ValueError for a singular
    affine, ``TooManyVoxels`` when the resampled grid would exceed the voxel cap."""
    sine = obliquity(volume.affine)
    if sine <= OBLIQUE_TOLERANCE:
        canonical, t = to_canonical(volume)
        return canonical, t, ""
    resampled = resample_to_lps(volume)
    t = np.linalg.inv(np.asarray(volume.affine, float)) @ resampled.affine
    s = resampled.spacing
    note = (f"resampled from an oblique grid (voxel axes up to {np.degrees(np.arcsin(min(sine, 1.0))):.1f} deg off "
            f"the patient axes) onto LPS axes at {s[0]:.3g} x {s[1]:.3g} x {s[2]:.3g} mm (linear, "
            f"{OUTSIDE_HU} HU outside the scanned field)")
    return resampled, t, note


def load_nifti_region(path: str | os.PathLike, box: Box, margin_mm: float = 5.0, dtype=np.int16) -> Volume:
    """Only the voxels of a NIfTI file inside ``box`` (LPS mm) grown by ``margin_mm``: a Volume whose affine
    places the sub-block where it lies. An uncompressed ``.nii`` is memory-mapped (only those bytes are
    read); a ``.nii.gz`` is decompressed up to the block's last slice. Raises ValueError when the box misses
    the volume, ``UnreadableVolume`` (a ValueError) for a damaged file."""
    with _reading(path):
        check_nifti_extensions(path)
        img = nib.load(str(path))
    affine = LPS_TO_RAS @ img.affine
    shape_kji = tuple(int(s) for s in img.shape[:3][::-1])
    lo, hi = box_to_voxels(affine, shape_kji, box.expanded(margin_mm))
    if any(h < l for l, h in zip(lo, hi)):
        raise ValueError(f"{path}: the box {box.to_dict()} lies outside the volume")
    check_voxels([h - l + 1 for l, h in zip(lo, hi)], f"region of {Path(path).name}")
    with _reading(path):
        block = np.asanyarray(img.dataobj[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1])
    if dtype is not None:
        block = block.astype(dtype, copy=False)
    sub = affine.copy()
    sub[:3, 3] = affine[:3, :3] @ np.asarray(lo, float) + affine[:3, 3]
    return Volume(np.ascontiguousarray(block.transpose(2, 1, 0)), sub)
