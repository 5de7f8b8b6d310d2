"""Atlases for gland localisation: small CTs on a 3 mm LPS-aligned grid whose adrenal glands are known.

An atlas file (``.npz``) holds ``hu`` (int16 ``[z, y, x]``), ``origin`` (LPS mm of voxel 0), ``step`` (mm),
``points_R`` / ``points_L`` (float32 ``(N, 3)`` LPS mm: the gland mask's voxel cells, corners included, so a box
around the mapped points holds every gland voxel), and ``meta`` (JSON: name, source, licence). The shipped
atlases are written by ``scripts/build_proposal_atlases.py`` from the TotalSegmentator example CT (Apache-2.0)
and from ``synthetic`` patients, and live in ``inference/ml/proposals/atlases/``.
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

    def gland_box(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        p = self.points[side]
        return p.min(axis=0), p.max(axis=0)


def save_atlas(atlas: Atlas, path: str | os.PathLike) -> Path:
    """Write an atlas ``.npz`` (compressed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hu = np.clip(np.rint(atlas.scan.hu), -1024, 3071).astype(np.int16)
    hu[~atlas.scan.valid] = -2048  # outside the field of view
    np.savez_compressed(path, hu=hu, origin=np.asarray(atlas.scan.origin, float), step=float(atlas.scan.step),
                        points_R=atlas.points["R"].astype(np.float32), points_L=atlas.points["L"].astype(np.float32),
                        meta=json.dumps(dict(atlas.meta, name=atlas.name)))
    return path


def load_atlas(path: str | os.PathLike) -> Atlas:
    with np.load(path) as f:
        hu = f["hu"]
        valid = hu > -2000
        scan = Canonical(hu=np.where(valid, hu, -1024).astype(np.float32), valid=valid,
                         origin=np.asarray(f["origin"], float), step=float(f["step"]))
        meta = json.loads(str(f["meta"]))
        points = {s: np.asarray(f[f"points_{s}"], float) for s in SIDES}
    return Atlas(name=meta.get("name", Path(path).stem), scan=scan, points=points, meta=meta)


@lru_cache(maxsize=4)
def _load_dir(folder: str) -> tuple[Atlas, ...]:
    return tuple(load_atlas(p) for p in sorted(Path(folder).glob("*.npz")))


def shipped_atlases(folder: str | os.PathLike | None = None, exclude_sources: tuple[str, ...] = ()) -> list[Atlas]:
    """The atlases in ``folder`` (default: the shipped ones), minus those made from ``exclude_sources``
    (a test on a scan leaves out the atlas made from that scan)."""
    return [a for a in _load_dir(str(folder or ATLAS_DIR)) if a.source not in exclude_sources]
