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
