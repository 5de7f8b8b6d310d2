"""2.5D images from a CT volume and its right/left adrenal boxes (the same code for training and inference).

Two layouts (``config["image"]["layout"]``):

- ``side`` (per gland): each side is cropped on its own, ``side_px`` square at ``pixel_spacing_mm`` around its
  box's centre, over ITS box's z extent at ``slice_spacing_mm``; the LEFT gland is mirrored left-right so both
  sides share one orientation (lateral on the image's left, medial/spine on its right, anterior at the top).
  :func:`build_side_images` -> :class:`SideImages`, :func:`build_scan_images` -> ``{"R": .., "L": ..}``.
- ``joined`` (the original study): right|left crops side by side (240x120, the patient's right on the image
  left) over the union of the boxes' z extents: :func:`build_images`.

Common to both: HU clipped to [-200, 400] and scaled to [0, 1]; three consecutive resampled slices (centre
-1, 0, +1 ``slice_spacing_mm``) are the channels; columns run along LPS +x (mirrored for the left side), rows
along +y. Per-gland images are centred every ``stride_mm`` (default: the slice spacing, as the original; twice it
still shows every resampled slice once, in half the images).

Speed: only the slab of voxels the crop needs is read and converted to float (never the whole volume); an
axis-aligned volume (the usual CT: the affine's 3x3 is diagonal up to signs) is resampled separably (linear
along k, then j, then i); an oblique one by ``scipy.ndimage.map_coordinates`` on the slab. Outside the volume
reads as air (-1024 HU). ``benchmarks/bench_images25d.py`` compares with the original notebook's step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .geometry import Box, lps_to_voxel
from .limits import check_voxels
from .volume import Volume

HU_WINDOW = (-200.0, 400.0)
AIR_HU = -1024.0
SIDES = ("R", "L")
DEFAULT_IMAGE = {"layout": "joined", "side_px": 120, "pixel_spacing_mm": 0.7, "slice_spacing_mm": 3.0,
                 "stride_mm": 0.0}


def image_config(config: dict | None) -> dict:
    """The crop parameters of a run or image configuration (``config["image"]`` or top-level keys)."""
    config = config or {}
    src = config.get("image", config)
    cfg = {k: type(v)(src.get(k, v)) for k, v in DEFAULT_IMAGE.items()}
    if cfg["layout"] not in ("joined", "side"):
        raise ValueError(f"image layout must be 'joined' or 'side', not {cfg['layout']!r}")
    if cfg["stride_mm"] <= 0:
        cfg["stride_mm"] = cfg["slice_spacing_mm"]
    return cfg


def scale_hu(hu: np.ndarray) -> np.ndarray:
    """HU clipped to the window and scaled to [0, 1] (float32)."""
    lo, hi = HU_WINDOW
    out = np.clip(hu, lo, hi, dtype=np.float32) if hu.dtype == np.float32 else np.clip(hu.astype(np.float32), lo, hi)
    out -= lo
    out *= 1.0 / (hi - lo)
    return out


# --- resampling ------------------------------------------------------------------------------------------

def _axis_aligned(affine: np.ndarray) -> bool:
    m = np.asarray(affine, float)[:3, :3]
    return bool(np.all(np.abs(m - np.diag(np.diag(m))) <= 1e-6 * np.abs(np.diag(m)).max()))


def _interp_axis(a: np.ndarray, axis: int, f: np.ndarray, lo: int, n_vol: int) -> np.ndarray:
    """Linear interpolation of the slab ``a`` (which starts at voxel ``lo`` of an axis of ``n_vol`` voxels) at
    fractional volume indices ``f`` along ``axis``. Samples outside [0, n_vol - 1] read as air, as
    ``map_coordinates(mode="constant")`` has it."""
    valid = (f >= -1e-6) & (f <= n_vol - 1 + 1e-6)
    i0 = np.clip(np.floor(f), 0, max(n_vol - 2, 0)).astype(np.int64)
    w1 = np.clip(f - i0, 0.0, 1.0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_vol - 1)
    hi = a.shape[axis] - 1
    g0 = np.take(a, np.clip(i0 - lo, 0, hi), axis=axis)
    g1 = np.take(a, np.clip(i1 - lo, 0, hi), axis=axis)
    shape = [1] * a.ndim
    shape[axis] = len(f)
    g1 -= g0
    g1 *= w1.reshape(shape)
    g0 += g1
    if not valid.all():
        g0 = np.where(valid.reshape(shape), g0, np.float32(AIR_HU))
    return g0


def sample_grid(volume: Volume, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """HU (float32) ``[len(zs), len(ys), len(xs)]`` at the LPS grid ``z x y x x`` (mm), linear, air outside.

    Reads only the voxels the grid needs (as int16 slices of ``volume.array``, converted after cropping)."""
    arr = volume.array
    nk, nj, ni = arr.shape
    xs, ys, zs = (np.asarray(v, float) for v in (xs, ys, zs))
    check_voxels((len(zs), len(ys), len(xs)), "resampled crop (planes x rows x columns)")
    if _axis_aligned(volume.affine):
        inv = np.linalg.inv(np.asarray(volume.affine, float))
        fi = inv[0, 0] * xs + inv[0, 3]
        fj = inv[1, 1] * ys + inv[1, 3]
        fk = inv[2, 2] * zs + inv[2, 3]
        rng = []
        for f, n in ((fk, nk), (fj, nj), (fi, ni)):
            lo = int(np.clip(np.floor(f.min()), 0, n - 1))
            hi = int(np.clip(np.floor(f.max()) + 1, 0, n - 1))
            rng.append((lo, hi))
        (k0, k1), (j0, j1), (i0, i1) = rng
        slab = np.asarray(arr[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1], dtype=np.float32)
        out = _interp_axis(slab, 0, fk, k0, nk)
        out = _interp_axis(out, 1, fj, j0, nj)
        return np.ascontiguousarray(_interp_axis(out, 2, fi, i0, ni))
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    ijk = lps_to_voxel(volume.affine, np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=-1))
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, np.array([ni, nj, nk]) - 1)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, np.array([ni, nj, nk]) - 1)
    slab = np.asarray(arr[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1], dtype=np.float32)
    coords = (ijk - lo)[:, ::-1].T
    out = ndimage.map_coordinates(slab, coords, order=1, mode="constant", cval=AIR_HU, prefilter=False)
    # points inside the slab's bounds but outside the volume still read as air: the slab is the volume there
    return out.reshape(len(zs), len(ys), len(xs)).astype(np.float32)


def _crop_axes(centre_xy, side_px: int, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    half = (side_px - 1) / 2 * pixel_mm
    cx, cy = float(centre_xy[0]), float(centre_xy[1])
    return cx + np.linspace(-half, half, side_px), cy + np.linspace(-half, half, side_px)


def _centres(lo: float, hi: float, step: float) -> np.ndarray:
    """Image centres every ``step`` mm, centred in [lo, hi]; at least one (the middle)."""
    n = int(np.floor((hi - lo) / step + 1e-6)) + 1
    return lo + (hi - lo - (n - 1) * step) / 2 + step * np.arange(max(n, 1))


def _channels(scaled: np.ndarray) -> np.ndarray:
    """``[n + 2, H, W]`` consecutive slices -> ``[n, 3, H, W]`` (previous, centre, next)."""
    return np.ascontiguousarray(np.stack([scaled[:-2], scaled[1:-1], scaled[2:]], axis=1))


# --- per-gland images ------------------------------------------------------------------------------------

@dataclass
class SideImages:
    """One gland's 2.5D images.

    ``images`` ``[N, 3, S, S]`` float32 in [0, 1] (the LEFT side mirrored left-right); ``z_mm`` ``[N]`` LPS z of
    each image's centre slice; ``centre_mm`` the LPS (x, y) of the crop centre; ``pixel_mm`` in-plane spacing."""

    side: str
    images: np.ndarray
    z_mm: np.ndarray
    centre_mm: tuple[float, float]
    pixel_mm: float
    slice_mm: float

    @property
    def mirrored(self) -> bool:
        return self.side == "L"

    def pixel_to_lps(self, index: np.ndarray | int, row: np.ndarray | float, col: np.ndarray | float) -> np.ndarray:
        """LPS mm ``(..., 3)`` of (image index, row, column) positions (fractional allowed) of these images."""
        s = self.images.shape[-1]
        index, row, col = np.broadcast_arrays(np.asarray(index), np.asarray(row, float), np.asarray(col, float))
        u = (col - (s - 1) / 2) * self.pixel_mm
        x = self.centre_mm[0] + (-u if self.mirrored else u)
        y = self.centre_mm[1] + (row - (s - 1) / 2) * self.pixel_mm
        z = np.asarray(self.z_mm, float)[np.asarray(index, int)]
        return np.stack([x, y, z], axis=-1)

    def to_meta(self) -> dict:
        """JSON-ready geometry (everything but the pixels)."""
        return {"side": self.side, "z_mm": [round(float(z), 3) for z in self.z_mm],
                "centre_mm": [round(float(c), 3) for c in self.centre_mm], "pixel_mm": self.pixel_mm,
                "slice_mm": self.slice_mm, "mirrored": self.mirrored, "shape": list(self.images.shape)}


def build_side_images(volume: Volume, box: Box, side: str, config: dict | None = None) -> SideImages:
    """One gland's images (see the module docstring); z spans ``box``'s own z extent. Raises ValueError for
    an unknown side."""
    if side not in SIDES:
        raise ValueError(f"side must be 'R' or 'L', not {side!r}")
    cfg = image_config(config)
    step, px, mm = cfg["slice_spacing_mm"], cfg["side_px"], cfg["pixel_spacing_mm"]
    z = _centres(box.lps_min[2], box.lps_max[2], cfg["stride_mm"])
    wanted = np.stack([z - step, z, z + step], axis=1)  # [n, 3] the channels' planes
    planes, where = np.unique(np.round(wanted, 4), return_inverse=True)  # shared planes sampled once
    check_voxels((len(planes), px, px), f"2.5D images of side {side} (planes x rows x columns)")
    check_voxels((len(z), 3, px, px), f"2.5D images of side {side} (images x channels x rows x columns)")
    xs, ys = _crop_axes(box.centre, px, mm)
    stack = scale_hu(sample_grid(volume, xs, ys, planes))
    if side == "L":
        stack = stack[:, :, ::-1]
    images = np.ascontiguousarray(stack[where.reshape(len(z), 3)])
    return SideImages(side, images, z.copy(), (float(box.centre[0]), float(box.centre[1])), mm, step)


def build_scan_images(volume: Volume, boxes: dict[str, Box | None], config: dict | None = None
                      ) -> dict[str, SideImages]:
    """``{"R": SideImages, "L": SideImages}`` for the sides that have a box; ValueError when none has."""
    out = {s: build_side_images(volume, boxes[s], s, config) for s in SIDES if boxes.get(s) is not None}
    if not out:
        raise ValueError("no box for either side")
    return out


def region_needed(boxes: dict[str, Box | None], config: dict | None = None) -> Box:
    """The LPS box holding every sample the scan's images read (crop squares, the slices either side): load
    only this region (:func:`inference.ml.volume.load_nifti_region`, margin >= one voxel) and the images are
    the same as from the whole volume."""
    cfg = image_config(config)
    half = (cfg["side_px"] - 1) / 2 * cfg["pixel_spacing_mm"]
    step = cfg["slice_spacing_mm"]
    pts = []
    for b in (b for b in boxes.values() if b is not None):
        c = b.centre
        pts += [(c[0] - half, c[1] - half, b.lps_min[2] - 2 * step), (c[0] + half, c[1] + half, b.lps_max[2] + 2 * step)]
    if not pts:
        raise ValueError("no box for either side")
    return Box.from_points(np.array(pts))


# --- the original joined layout --------------------------------------------------------------------------

def build_images(volume: Volume, boxes: dict[str, Box], config: dict | None = None, *,
                 blank_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Joined layout: ``(images [N, 3, side_px, 2 side_px] float32 in [0, 1], z_mm [N])``; z_mm is each image's
    centre slice, over the union of the boxes' z extents (the tightened boxes set how many images there are).

    ``blank_missing``: a side without a box (its gland outside the field of view) is blanked to 0, the bottom of
    the HU window, as ``inference.ml.verdict.blank_side`` does for per-side scores; else it is an error.
    Raises ValueError naming the problem (a missing side, no box at all, boxes spanning fewer than 3 resampled
    slices).
    """
    cfg = image_config(config)
    present = [s for s in SIDES if boxes.get(s) is not None]
    missing = [s for s in SIDES if s not in present]
    if not present or (missing and not blank_missing):
        raise ValueError(f"no box for side {', '.join(missing)}")
    lo = min(boxes[s].lps_min[2] for s in present)
    hi = max(boxes[s].lps_max[2] for s in present)
    step = cfg["slice_spacing_mm"]
    n = int(np.floor((hi - lo) / step + 1e-6)) + 1
    if n < 3:
        raise ValueError(f"boxes span {hi - lo:.1f} mm in z: fewer than 3 slices at {step} mm")
    check_voxels((n, 3, cfg["side_px"], 2 * cfg["side_px"]), "joined 2.5D images (images x channels x rows x columns)")
    z = lo + (hi - lo - (n - 1) * step) / 2 + step * np.arange(n)  # centred in the boxes' extent
    px = cfg["side_px"]
    halves = []
    for s in SIDES:
        if s in missing:
            halves.append(None)
            continue
        xs, ys = _crop_axes(boxes[s].centre, px, cfg["pixel_spacing_mm"])
        halves.append(scale_hu(sample_grid(volume, xs, ys, z)))
    scaled = np.concatenate([h if h is not None else np.zeros((n, px, px), np.float32) for h in halves], axis=2)
    return _channels(scaled), z[1:-1].copy()


def thumbnail_png(image: np.ndarray, path) -> None:
    """8-bit PNG of the middle channel of one image ``[3, H, W]`` (for display only; the .npy is the data)."""
    from PIL import Image

    Image.fromarray(np.clip(np.asarray(image[1]) * 255 + 0.5, 0, 255).astype(np.uint8)).save(path)
