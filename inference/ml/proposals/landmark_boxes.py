"""Both adrenal boxes from landmarks: each gland lies beside the vertebral column, just anterior-lateral of
the vertebral body, around the level of the lung base on its side.

The box of a side, relative to the landmarks (mm):
- x: ``LATERAL_MM`` from the spine midline towards that side;
- y: ``Y_FROM_SPINE_MM`` relative to the anterior edge of the vertebral body (negative = anterior);
- z: ``Z_FROM_LUNG_BASE_MM`` relative to the lowest slice with lung on that side;
clipped to the scanned z-range. Gland (with lesion) extents measured against these landmarks: on the
TotalSegmentator example CT lateral 21-57 mm, y -18..+24 mm, z -24..+18 mm; on 80 glands of the synthetic
cohort (``synthetic``, seeds 0-39) lateral 12-76 mm, y -22..+48 mm, z -45..+50 mm. The
constants cover those with about 5-15 mm to spare (y widened to +65 mm after a lesion-bearing right gland of the
revised synthetic anatomy reached +62 mm), so a box is at most 75 x 105 x 115 mm (the original
study's hand crops were 72 x 72 mm in-plane).
"""
from __future__ import annotations

import numpy as np

from ..geometry import Box
from ..volume import Volume
from .landmarks import Landmarks, find_landmarks
from .result import Proposal

LATERAL_MM = (5.0, 80.0)
Y_FROM_SPINE_MM = (-40.0, 65.0)
Z_FROM_LUNG_BASE_MM = (-60.0, 55.0)
MIN_BELOW_LUNG_BASE_MM = 30.0  # a scan ending closer than this below the lung bases misses the glands
MAX_BOX_MM = (LATERAL_MM[1] - LATERAL_MM[0], Y_FROM_SPINE_MM[1] - Y_FROM_SPINE_MM[0],
              Z_FROM_LUNG_BASE_MM[1] - Z_FROM_LUNG_BASE_MM[0])


def boxes_from_landmarks(marks: Landmarks) -> dict[str, Box]:
    """The two boxes (keys "R", "L") for landmarks that were all found."""
    boxes = {}
    for side, sign in (("R", -1.0), ("L", 1.0)):
        xs = sorted(marks.spine_x + sign * np.asarray(LATERAL_MM))
        ys = marks.spine_y_anterior + np.asarray(Y_FROM_SPINE_MM)
        zs = marks.lung_base_z[side] + np.asarray(Z_FROM_LUNG_BASE_MM)
        zs = np.clip(zs, marks.scan_z[0], marks.scan_z[1])
        boxes[side] = Box((xs[0], ys[0], zs[0]), (xs[1], ys[1], zs[1]))
    return boxes


def propose_from_landmarks(volume: Volume) -> Proposal:
    """Boxes for both glands, or "not covered" with the reason when the field of view misses the region."""
    marks = find_landmarks(volume)
    if marks.problem:
        return Proposal.not_covered(f"adrenal region not located: {marks.problem}", method="landmarks")
    lowest_base = min(marks.lung_base_z.values())
    below = lowest_base - marks.scan_z[0]
    if below < MIN_BELOW_LUNG_BASE_MM:
        return Proposal.not_covered(f"adrenal region not covered: the scan ends {max(below, 0.0):.0f} mm below the lung "
                                    f"bases (chest only?)", method="landmarks")
    return Proposal(status="proposed", boxes=boxes_from_landmarks(marks), method="landmarks")
