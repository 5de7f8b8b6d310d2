"""Where the model looked: class-activation maps of flagged images placed in the volume's LPS millimetres.

The maps come free with a verdict: every backbone ends in global average pooling and one linear unit, so the
linear unit applied at each position of the last feature map (CAM, Zhou et al. CVPR 2016) is a logit map whose
mean is the image's logit (``inference.ml.networks``); ``Ensemble.predict_maps`` averages it over the folds.
This module turns one image's map into what a viewer overlays: a grid of values on the axial plane at the
image's z, with the LPS position of every cell, and the peak's LPS point.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import lps_to_voxel
from .images25d import SideImages


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def image_evidence(side: SideImages, index: int, cam: np.ndarray, probability: float, grid_px: int = 24) -> dict:
    """JSON-ready evidence for image ``index`` of one side.

    ``cam``: its logit map ``[h, w]`` (any size: cells are spread over the whole crop). Returns
    ``{"side", "index", "z_mm", "probability", "peak_lps": [x, y, z], "heat": {"x0", "y0", "dx", "dy", "z",
    "shape": [rows, cols], "values": rows x cols in [0, 1]}}``: cell ``[r][c]`` lies at LPS
    ``(x0 + c*dx, y0 + r*dy, z)`` (``dx`` < 0 on the mirrored left side); values are the sigmoid of the
    (bilinearly upsampled) logit map.
    """
    cam = np.asarray(cam, np.float32)
    s = side.images.shape[-1]
    zoom = (grid_px / cam.shape[0], grid_px / cam.shape[1])
    fine = ndimage.zoom(cam, zoom, order=1, mode="nearest", grid_mode=True)
    # cell centres in image pixels: the map covers the whole crop
    step = s / grid_px
    centres = (np.arange(grid_px) + 0.5) * step - 0.5
    r, c = np.unravel_index(int(np.argmax(fine)), fine.shape)
    peak = side.pixel_to_lps(index, centres[r], centres[c])
    corner = side.pixel_to_lps(index, centres[0], centres[0])
    nxt = side.pixel_to_lps(index, centres[1], centres[1])
    return {
        "side": side.side, "index": int(index), "z_mm": round(float(side.z_mm[index]), 2),
        "probability": round(float(probability), 4),
        "peak_lps": [round(float(v), 2) for v in peak],
        "heat": {"x0": round(float(corner[0]), 3), "y0": round(float(corner[1]), 3),
                 "dx": round(float(nxt[0] - corner[0]), 4), "dy": round(float(nxt[1] - corner[1]), 4),
                 "z": round(float(side.z_mm[index]), 2), "shape": [grid_px, grid_px],
                 "values": np.round(_sigmoid(fine), 3).tolist()},
    }


def heat_at(ev: dict, xy_mm: np.ndarray) -> np.ndarray:
    """The evidence map of ``ev`` (:func:`image_evidence`) at LPS points ``xy_mm`` ``(..., 2)`` (x, y) on its
    plane: bilinear between cell centres, 0 outside the crop (half a cell beyond the outer centres)."""
    heat = ev["heat"]
    values = np.asarray(heat["values"], np.float32)
    rows, cols = values.shape
    xy = np.asarray(xy_mm, float)
    c = (xy[..., 0] - heat["x0"]) / heat["dx"]
    r = (xy[..., 1] - heat["y0"]) / heat["dy"]
    out = ndimage.map_coordinates(values, [r.ravel(), c.ravel()], order=1, mode="nearest").reshape(r.shape)
    inside = (r >= -0.5) & (r <= rows - 0.5) & (c >= -0.5) & (c <= cols - 0.5)
    return np.where(inside, out, 0.0)


def evidence_thumbnail(volume, ev: dict, size: int = 96, window: tuple[float, float] = (40.0, 400.0),
                       alpha: float = 0.55) -> np.ndarray:
    """An RGB ``uint8 [size, size, 3]`` picture of one evidence map over the CT it was computed on: the axial
    plane at the map's z over the map's square in-plane extent, drawn as the viewer draws axial slices (patient
    right on the left, anterior at the top; LPS x grows to the right, y downwards), CT windowed at
    ``window`` (level, width) HU and the map blended in red-yellow with opacity ``alpha`` x its value.
    ``volume``: an ``inference.ml.volume.Volume``; LPS -> voxel through ``inference.ml.geometry``."""
    heat = ev["heat"]
    rows, cols = heat["shape"]
    xs = heat["x0"] + np.array([-0.5, cols - 0.5]) * heat["dx"]
    ys = heat["y0"] + np.array([-0.5, rows - 0.5]) * heat["dy"]
    gx = np.linspace(xs.min(), xs.max(), size)
    gy = np.linspace(ys.min(), ys.max(), size)
    X, Y = np.meshgrid(gx, gy)  # row = y (anterior first), column = x (patient right first)
    lps = np.stack([X, Y, np.full_like(X, float(heat["z"]))], axis=-1)
    ijk = lps_to_voxel(volume.affine, lps)
    ct = ndimage.map_coordinates(np.asarray(volume.array, np.float32), [ijk[..., 2], ijk[..., 1], ijk[..., 0]],
                                 order=1, mode="constant", cval=-1000.0)
    level, width = window
    grey = np.clip((ct - (level - width / 2)) / width, 0.0, 1.0)
    h = heat_at(ev, np.stack([X, Y], axis=-1))
    colour = np.stack([np.ones_like(h), np.clip(2 * h - 1, 0, 1), np.zeros_like(h)], axis=-1)  # red -> yellow
    a = (alpha * h)[..., None]
    rgb = grey[..., None] * (1 - a) + colour * a
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
