"""Automatic crop-box proposals for both adrenal glands, with no downloaded weights (Django-free).

``propose(volume)`` anchors on landmarks (lung bases, vertebral column); ``propose_from_masks(...)`` uses
TotalSegmentator masks when the user has them. Both answer a ``Proposal``: two LPS boxes, or
"not_covered" with the reason (chest-only or pelvis-only fields of view).
"""
from __future__ import annotations

from ..volume import Volume
from .landmark_boxes import MAX_BOX_MM, propose_from_landmarks
from .masks import MARGIN_MM, find_mask_files, mask_box, propose_from_masks
from .result import Proposal


def propose(volume: Volume) -> Proposal:
    """Both boxes for a CT volume from its landmarks."""
    return propose_from_landmarks(volume)


__all__ = ["MARGIN_MM", "MAX_BOX_MM", "Proposal", "find_mask_files", "mask_box", "propose", "propose_from_masks"]
