"""2.5D images from a CT volume and its right/left adrenal boxes (the same code for training and inference).

Each side is cropped in millimetres around its box centre at a fixed in-plane spacing (``side_px`` square,
``pixel_spacing_mm`` per pixel) and resampled to a fixed slice spacing over the boxes' z extent; right|left
are joined with the patient's right on the image LEFT (columns run LPS +x, rows anterior->posterior); HU is
clipped to [-200, 400] and scaled to [0, 1]; every 3 consecutive slices become the 3 channels.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import Box, lps_to_voxel
from .volume import Volume

HU_WINDOW = (-200.0, 400.0)
DEFAULT_IMAGE = {"side_px": 120, "pixel_spacing_mm": 0.7, "slice_spacing_mm": 3.0}


def image_config(config: dict | None) -> dict:
    """The crop parameters of a run or image configuration (``config["image"]`` or top-level keys)."""
    config = config or {}
    src = config.get("image", config)
    return {k: type(v)(src.get(k, v)) for k, v in DEFAULT_IMAGE.items()}


def _side_stack(volume: Volume, box: Box, z_mm: np.ndarray, side_px: int, pixel_mm: float) -> np.ndarray:
    """HU ``[len(z), side_px, side_px]`` around the box centre; outside the volume reads as air (-1024)."""
    half = (side_px - 1) / 2 * pixel_mm
    cx, cy = box.centre[0], box.centre[1]
    xs = cx + np.linspace(-half, half, side_px)
    ys = cy + np.linspace(-half, half, side_px)
    zz, yy, xx = np.meshgrid(z_mm, ys, xs, indexing="ij")
    ijk = lps_to_voxel(volume.affine, np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=-1))
    out = ndimage.map_coordinates(np.asarray(volume.array, np.float32), ijk[:, ::-1].T, order=1, mode="constant",
                                  cval=-1024.0, prefilter=False)
    return out.reshape(len(z_mm), side_px, side_px)


def scale_hu(hu: np.ndarray) -> np.ndarray:
    lo, hi = HU_WINDOW
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def build_images(volume: Volume, boxes: dict[str, Box], config: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 3, side_px, 2 side_px] float32 in [0, 1], z_mm [N])``; z_mm is each image's centre slice.

    Raises ValueError naming the problem (a missing side, boxes spanning fewer than 3 resampled slices).
    """
    cfg = image_config(config)
    missing = [s for s in ("R", "L") if s not in boxes or boxes[s] is None]
    if missing:
        raise ValueError(f"no box for side {', '.join(missing)}")
    lo = min(boxes["R"].lps_min[2], boxes["L"].lps_min[2])
    hi = max(boxes["R"].lps_max[2], boxes["L"].lps_max[2])
    step = cfg["slice_spacing_mm"]
    n = int(np.floor((hi - lo) / step + 1e-6)) + 1
    if n < 3:
        raise ValueError(f"boxes span {hi - lo:.1f} mm in z: fewer than 3 slices at {step} mm")
    z = lo + (hi - lo - (n - 1) * step) / 2 + step * np.arange(n)  # centred in the boxes' extent
    joined = np.concatenate([_side_stack(volume, boxes[s], z, cfg["side_px"], cfg["pixel_spacing_mm"])
                             for s in ("R", "L")], axis=2)
    scaled = scale_hu(joined)
    images = np.stack([scaled[:-2], scaled[1:-1], scaled[2:]], axis=1)
    return np.ascontiguousarray(images), z[1:-1].copy()


def thumbnail_png(image: np.ndarray, path) -> None:
    """8-bit PNG of the middle channel of one image ``[3, H, W]`` (for display only; the .npy is the data)."""
    from PIL import Image

    Image.fromarray(np.clip(np.asarray(image[1]) * 255 + 0.5, 0, 255).astype(np.uint8)).save(path)
