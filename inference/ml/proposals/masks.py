"""Boxes from TotalSegmentator adrenal masks supplied by the user.

Accepted: a folder with per-class files ``adrenal_gland_right.nii.gz`` / ``adrenal_gland_left.nii.gz``,
or a multilabel NIfTI of the ``total`` task where 8 = right and 9 = left adrenal gland. A box is the
tight extent of the mask's voxels, each voxel counted as its full cell (centre +- half a voxel), plus
``MARGIN_MM`` on every face. The mask's own affine is used, so a mask on another grid than the scan still
gives the right millimetres.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..geometry import Box, voxel_to_lps
from ..volume import load_nifti
from .result import Proposal, SideProposal

MARGIN_MM = 5.0
MULTILABEL_IDS = {"R": 8, "L": 9}
PER_CLASS_FILES = {"R": "adrenal_gland_right", "L": "adrenal_gland_left"}


def mask_box(affine: np.ndarray, mask_kji: np.ndarray, margin_mm: float = MARGIN_MM) -> Box | None:
    """Tight LPS box around the voxels of a boolean ``[k, j, i]`` mask plus the margin; None when empty."""
    kji = np.argwhere(mask_kji)
    if kji.size == 0:
        return None
    lo, hi = kji.min(axis=0)[::-1] - 0.5, kji.max(axis=0)[::-1] + 0.5  # voxel cell faces, (i, j, k)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return Box.from_points(voxel_to_lps(affine, corners)).expanded(margin_mm)


def find_mask_files(masks: str | os.PathLike, name_hint: str = "") -> dict[str, Path] | Path | None:
    """Where the masks of one scan are under ``masks``: a per-class folder (dict side -> file), a multilabel
    file (Path), or None. ``masks`` may be the file itself, a per-class folder, or a folder holding one of
    those per scan named like ``name_hint`` (``<hint>/``, ``<hint>.nii.gz``; without a hint: ``masks`` itself)."""
    root = Path(masks)
    candidates = [root]
    if name_hint:
        candidates = [root / name_hint, root / f"{name_hint}.nii.gz", root / f"{name_hint}.nii"]
    for c in candidates:
        if c.is_file():
            return c
        if c.is_dir():
            found = {s: c / f"{n}.nii.gz" for s, n in PER_CLASS_FILES.items()}
            found = {s: (p if p.exists() else p.with_suffix("")) for s, p in found.items()}
            if all(p.exists() for p in found.values()):
                return found
    return None


def propose_from_masks(source: dict[str, Path] | Path, margin_mm: float = MARGIN_MM) -> Proposal:
    """Boxes from per-class files or a multilabel file, per side: a side whose mask is empty is "not_covered"
    with a note saying so (TotalSegmentator found no gland there); the scan is "not_covered" only when both
    are. Mask boxes are exact: confidence 1."""
    sides: dict[str, SideProposal] = {}
    for side in ("R", "L"):
        if isinstance(source, dict):
            m = load_nifti(source[side], dtype=None)
            mask = np.asarray(m.array) > 0
        else:
            m = load_nifti(source, dtype=None)
            mask = np.rint(np.asarray(m.array)) == MULTILABEL_IDS[side]
        box = mask_box(m.affine, mask, margin_mm)
        if box is None:
            name = "right" if side == "R" else "left"
            sides[side] = SideProposal("not_covered", None, 0.0, "mask",
                                       f"the mask has no {name} adrenal voxels (label {MULTILABEL_IDS[side]})"
                                       if not isinstance(source, dict) else f"the mask has no {name} adrenal voxels")
        else:
            sides[side] = SideProposal("proposed", box, 1.0, "mask")
    return Proposal.from_sides(sides, method="mask")
