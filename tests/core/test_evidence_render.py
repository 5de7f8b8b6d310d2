"""An evidence map drawn over its CT (``inference.ml.evidence``): the map lands on the voxels it names, in the
viewer's axial orientation (patient right on the left, anterior at the top)."""
from __future__ import annotations

import numpy as np

from inference.ml.evidence import evidence_thumbnail, heat_at
from inference.ml.volume import Volume


def _volume() -> Volume:
    """40 x 40 x 10 voxels of 1 x 1 x 2 mm at LPS origin (-20, -20, 0); a bright 3 mm cube at LPS (5, -8, 10)."""
    array = np.full((10, 40, 40), -100, np.int16)  # [k, j, i]
    affine = np.array([[1, 0, 0, -20.0], [0, 1, 0, -20.0], [0, 0, 2, 0.0], [0, 0, 0, 1]])
    i, j, k = 25, 12, 5  # LPS (5, -8, 10)
    array[k, j - 1:j + 2, i - 1:i + 2] = 300
    return Volume(array, affine)


def _evidence(mirrored: bool) -> dict:
    """A 10 x 10 map over LPS x in [-10, 10], y in [-17, 3] at z 10 with its hot cell at LPS (5, -8):
    mirrored (a left gland) runs x from +9 down to -9."""
    values = np.zeros((10, 10))
    dx = -2.0 if mirrored else 2.0
    x0 = 9.0 if mirrored else -9.0
    c = int(round((5.0 - x0) / dx))
    r = int(round((-8.0 - -16.0) / 2.0))
    values[r, c] = 1.0
    return {"side": "L" if mirrored else "R", "z_mm": 10.0, "probability": 0.9, "peak_lps": [5.0, -8.0, 10.0],
            "heat": {"x0": x0, "y0": -16.0, "dx": dx, "dy": 2.0, "z": 10.0, "shape": [10, 10],
                     "values": values.tolist()}}


def test_the_map_and_the_ct_meet_at_the_named_point_on_either_side():
    vol = _volume()
    for mirrored in (False, True):
        ev = _evidence(mirrored)
        assert heat_at(ev, np.array([5.0, -8.0])) == 1.0 and heat_at(ev, np.array([-30.0, -8.0])) == 0.0
        rgb = evidence_thumbnail(vol, ev, size=100, alpha=0.0).astype(int)  # the CT alone
        bright = np.argwhere(rgb[..., 0] >= rgb[..., 0].max() - 1).mean(axis=0)  # the cube's centre, px
        red = evidence_thumbnail(vol, ev, size=100, alpha=1.0).astype(int)
        hot = np.unravel_index(np.argmax(red[..., 0] - red[..., 2]), rgb.shape[:2])
        # 100 px over 20 mm: x = -10 + (col + .5) / 5 (right of the patient on the left), y likewise downwards
        assert abs(bright[1] - hot[1]) <= 2 and abs(bright[0] - hot[0]) <= 2, (mirrored, bright, hot)
        assert abs((-10 + bright[1] / 99 * 20) - 5.0) < 1.5 and abs((-17 + bright[0] / 99 * 20) - -8.0) < 1.5
