"""Automatic crop-box proposals for both adrenal glands, with no downloaded weights (Django-free).

``propose(volume)`` localises each gland by multi-atlas matching (``atlas_boxes``); ``propose_from_masks(...)``
uses TotalSegmentator masks when the user has them (the exact path); ``propose_from_landmarks`` is the earlier
lung-base-and-spine region proposer, kept as the benchmark's baseline. All answer a ``Proposal``: per side a box
(LPS mm, no side over 70 mm for the atlas path) with confidence, method and note, or "not_covered" with what is
missing; the scan is "not_covered" only when neither gland is in the field of view.
"""
from __future__ import annotations

from ..assessability import hounsfield_reason
from ..volume import Volume
from .atlas_boxes import MAX_SIDE_MM, propose_from_atlases
from .landmark_boxes import MAX_BOX_MM, propose_from_landmarks
from .masks import MARGIN_MM, find_mask_files, mask_box, propose_from_masks
from .result import Proposal, SideProposal


def propose(volume: Volume, exclude_sources: tuple[str, ...] = ()) -> Proposal:
    """Both boxes for a CT volume (``atlas_boxes.propose_from_atlases``); "not covered" with the reason when the
    volume's values are not Hounsfield units (``assessability.hounsfield_reason``: no air below -500 HU, as when a
    series' rescale is missing), instead of a localisation failure that would blame the field of view."""
    reason = hounsfield_reason(volume)
    if reason:
        return Proposal.not_covered(f"{reason}: the glands cannot be located in values that are not Hounsfield "
                                    "units (a missing or wrong rescale slope/intercept?)")
    return propose_from_atlases(volume, exclude_sources=exclude_sources)


__all__ = ["MARGIN_MM", "MAX_BOX_MM", "MAX_SIDE_MM", "Proposal", "SideProposal", "find_mask_files", "mask_box",
           "propose", "propose_from_atlases", "propose_from_landmarks", "propose_from_masks"]
