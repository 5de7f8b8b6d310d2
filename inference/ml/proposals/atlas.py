"""Atlases for gland localisation: small CTs on a 3 mm LPS-aligned grid whose adrenal glands are known.

An atlas file (``.npz``) holds ``hu`` (int16 ``[z, y, x]``), ``origin`` (LPS mm of voxel 0), ``step`` (mm),
``points_R`` / ``points_L`` (float32 ``(N, 3)`` LPS mm: the gland mask's voxel cells, corners included, so a box
around the mapped points holds every gland voxel; ``(0, 3)`` for a gland the atlas does not show, which then casts
no vote for that side), and ``meta`` (JSON: name, source, licence). The shipped
atlases are written by ``scripts/build_proposal_atlases.py`` from the TotalSegmentator example CT and example DICOM
series (Apache-2.0; the latter a 40 mm slab showing the right gland only) and from ``synthetic`` patients, and live
in ``inference/ml/proposals/atlases/``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .canonical import Canonical

ATLAS_DIR = Path(__file__).resolve().parent / "atlases"
SIDES = ("R", "L")
# A gland that the atlas' field of view cuts (its mask reaches the first or last scanned slice: a slab atlas) goes on
# beyond it by an unknown length; its estimates claim it up to this height, the tallest gland of the shipped atlases'
# masks (example_ct's left adrenal: 45 mm in voxel cells), instead of the seen part alone, whose centre lies off the
# gland's
FULL_GLAND_MM = 45.0


@dataclass
class Atlas:
    """One atlas: its scan on the canonical grid and the glands' point sets (LPS mm)."""

    name: str
    scan: Canonical
    points: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The data the atlas was made from (e.g. ``totalsegmentator:example_ct``), for leave-one-out checks."""
        return str(self.meta.get("source", self.name))

    @property
    def real(self) -> bool:
        """Made from a patient's CT (not from the synthetic generator)."""
        return not self.source.startswith("synthetic:")

    @property
    def sides(self) -> tuple[str, ...]:
        """The sides whose gland the atlas shows (an atlas of one gland votes for that side only)."""
        return tuple(s for s in SIDES if len(self.points.get(s, ())) > 0)

    def gland_box(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        p = self.points[side]
        if not len(p):
            raise ValueError(f"atlas {self.name} shows no {side} gland")
        return p.min(axis=0), p.max(axis=0)

    def cut(self, side: str) -> tuple[bool, bool]:
        """Whether the atlas' field of view cuts the gland (below, above): its mask's cells reach within one
        voxel of the first or last slice that has valid voxels."""
        lo, hi = self.gland_box(side)
        ks = np.nonzero(self.scan.valid.any(axis=(1, 2)))[0]
        if not len(ks):
            return False, False
        z0, z1 = self.scan.z_of(ks[0]), self.scan.z_of(ks[-1])
        return bool(lo[2] < z0 + self.scan.step / 2), bool(hi[2] > z1 - self.scan.step / 2)

    def gland_extent(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """``gland_box``, grown along z to ``FULL_GLAND_MM`` on each side where the field of view cuts the gland
        (the gland's place as far as the atlas can say; equal to ``gland_box`` for a gland seen whole)."""
        lo, hi = (b.copy() for b in self.gland_box(side))
        below, above = self.cut(side)
        missing = max(FULL_GLAND_MM - (hi[2] - lo[2]), 0.0)
        if below and above:
            lo[2], hi[2] = lo[2] - missing / 2, hi[2] + missing / 2
        elif below:
            lo[2] -= missing
        elif above:
            hi[2] += missing
        return lo, hi


def save_atlas(atlas: Atlas, path: str | os.PathLike) -> Path:
    """Write an atlas ``.npz`` (compressed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hu = np.clip(np.rint(atlas.scan.hu), -1024, 3071).astype(np.int16)
    hu[~atlas.scan.valid] = -2048  # outside the field of view
    points = {f"points_{s}": np.asarray(atlas.points.get(s, ()), np.float32).reshape(-1, 3) for s in SIDES}
    np.savez_compressed(path, hu=hu, origin=np.asarray(atlas.scan.origin, float), step=float(atlas.scan.step), **points,
                        meta=json.dumps(dict(atlas.meta, name=atlas.name)))
    return path


def load_atlas(path: str | os.PathLike) -> Atlas:
    with np.load(path) as f:
        hu = f["hu"]
        valid = hu > -2000
        scan = Canonical(hu=np.where(valid, hu, -1024).astype(np.float32), valid=valid,
                         origin=np.asarray(f["origin"], float), step=float(f["step"]))
        meta = json.loads(str(f["meta"]))
        points = {s: np.asarray(f[f"points_{s}"], float).reshape(-1, 3) for s in SIDES}
    return Atlas(name=meta.get("name", Path(path).stem), scan=scan, points=points, meta=meta)


@lru_cache(maxsize=4)
def _load_dir(folder: str) -> tuple[Atlas, ...]:
    return tuple(load_atlas(p) for p in sorted(Path(folder).glob("*.npz")))


def shipped_atlases(folder: str | os.PathLike | None = None, exclude_sources: tuple[str, ...] = ()) -> list[Atlas]:
    """The atlases in ``folder`` (default: the shipped ones), minus those made from ``exclude_sources``
    (a test on a scan leaves out the atlas made from that scan)."""
    return [a for a in _load_dir(str(folder or ATLAS_DIR)) if a.source not in exclude_sources]
