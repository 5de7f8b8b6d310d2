"""Supervision at the level it exists: per-side labels, lesion z-ranges, and the scan label as the fallback.

A scan is judged gland by gland: each side's 2.5D images form a *bag* (:class:`SideBag`). What is known about
a scan decides what a bag learns from:

- per-side labels (``none`` / ``R`` / ``L`` / ``RL``, :func:`side_labels`): each side's bag has its own label;
  a normal scan's sides are both normal, so normal scans always give side-level negatives;
- lesion z-ranges (markers drawn in the viewer, or a generator's ground truth): the images of that side that
  show the lesion are labelled abnormal, those a slice step or more away normal
  (:func:`lesion_image_labels`);
- only "abnormal" for the scan: the two sides together form one positive bag (the scan is the max of its sides).

:func:`training_units` turns scans into the units the multiple-instance trainer (``inference.ml.mil``) uses.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

SIDES = ("R", "L")
UNKNOWN = -1  # an image whose own label is not known


def parse_sides(text: str | None) -> frozenset[str] | None:
    """Which sides are abnormal: 'R', 'L', 'RL' (or 'LR', 'B', 'both'), 'none'/'-' (neither); '' or None when not
    known. Raises ValueError naming the bad value."""
    if text is None:
        return None
    t = str(text).strip().upper().replace(" ", "").replace(",", "").replace("+", "")
    if t == "":
        return None
    if t in ("NONE", "-", "N", "0"):
        return frozenset()
    if t in ("B", "BOTH", "RL", "LR"):
        return frozenset(SIDES)
    if t in SIDES:
        return frozenset([t])
    raise ValueError(f"side must be R, L, RL or none, not {text!r}")


def side_labels(scan_label: int, sides: str | frozenset[str] | None = None) -> dict[str, int | None]:
    """Per-side labels ``{"R": 0|1|None, "L": ...}`` from the scan label (0/1) and, when known, which sides are
    abnormal. A normal scan has two normal sides; an abnormal scan without ``sides`` has both unknown (None).
    Raises ValueError when they contradict each other (a normal scan with an abnormal side, an abnormal scan
    with none)."""
    if scan_label not in (0, 1):
        raise ValueError(f"scan label must be 0 or 1, not {scan_label!r}")
    s = parse_sides(sides) if not isinstance(sides, frozenset) else sides
    if scan_label == 0:
        if s:
            raise ValueError(f"a normal scan cannot have an abnormal side ({''.join(sorted(s))})")
        return {"R": 0, "L": 0}
    if s is None:
        return {"R": None, "L": None}
    if not s:
        raise ValueError("an abnormal scan needs at least one abnormal side (got 'none')")
    return {side: int(side in s) for side in SIDES}


def lesion_image_labels(z_mm: Sequence[float], slice_mm: float, lesion_z: Iterable[tuple[float, float]],
                        margin_mm: float | None = None) -> np.ndarray:
    """Image labels of one side's images from its lesions' z ranges (LPS mm): 1 where the image's three slices
    (centre ± ``slice_mm``) overlap a lesion, 0 where every slice is at least ``margin_mm`` (default one slice
    step) from every lesion, ``UNKNOWN`` (-1) in between. No lesions: all 0."""
    z = np.asarray(z_mm, float)
    margin = slice_mm if margin_mm is None else float(margin_mm)
    out = np.zeros(len(z), np.int8)
    near = np.zeros(len(z), bool)
    for lo, hi in lesion_z:
        lo, hi = min(lo, hi), max(lo, hi)
        top, bottom = z + slice_mm, z - slice_mm
        out[(top >= lo) & (bottom <= hi)] = 1
        near |= (top >= lo - margin) & (bottom <= hi + margin)
    out[(out == 0) & near] = UNKNOWN
    return out


@dataclass
class SideBag:
    """One gland's images and what is known about them.

    ``images`` ``[n, 3, S, S]`` (float16 or float32 in [0, 1], left side mirrored); ``z_mm`` ``[n]``; ``label``
    1/0 for an abnormal/normal side, None when unknown; ``image_labels`` ``[n]`` 1/0/-1 or None."""

    scan: str
    patient: str
    side: str
    images: np.ndarray
    z_mm: np.ndarray
    label: int | None = None
    image_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be R or L, not {self.side!r}")
        if len(self.images) != len(self.z_mm):
            raise ValueError(f"{self.scan} {self.side}: {len(self.images)} images but {len(self.z_mm)} z positions")
        if self.image_labels is not None and len(self.image_labels) != len(self.images):
            raise ValueError(f"{self.scan} {self.side}: image labels do not match the images")


@dataclass
class ScanSample:
    """A scan for training or evaluation: its label (0/1) and its sides' bags."""

    scan: str
    patient: str
    label: int
    bags: dict[str, SideBag] = field(default_factory=dict)

    @classmethod
    def from_images(cls, scan: str, patient: str, label: int, side_images: dict, sides: str | None = None,
                    lesion_z: dict[str, list[tuple[float, float]]] | None = None) -> ScanSample:
        """From ``{"R": SideImages, "L": SideImages}`` (``inference.ml.images25d``), the scan label, optionally
        the abnormal sides and, per side, lesion z ranges (then that side's images get their own labels)."""
        labels = side_labels(label, sides)
        bags = {}
        for s, si in side_images.items():
            img_labels = None
            if lesion_z is not None and labels[s] is not None:
                img_labels = lesion_image_labels(si.z_mm, si.slice_mm, lesion_z.get(s, []))
                if labels[s] == 1 and not (img_labels == 1).any():
                    img_labels = None  # the markers miss these images: fall back to the side label
            bags[s] = SideBag(scan, patient, s, si.images, np.asarray(si.z_mm, float), labels[s], img_labels)
        return cls(scan, patient, int(label), bags)


@dataclass
class Unit:
    """What the trainer learns from in one step: images (rows of the bags), a label, and how:
    ``kind`` 'images' (each image has its own label), 'bag' (top-k pooled = label)."""

    kind: str
    label: int
    parts: list[tuple[SideBag, np.ndarray]]  # (bag, indices of its images)
    image_labels: np.ndarray | None = None  # for kind 'images', aligned with the concatenated indices

    @property
    def size(self) -> int:
        return sum(len(i) for _, i in self.parts)


def training_units(scans: Iterable[ScanSample]) -> list[Unit]:
    """One unit per side with a known label (its images' own labels when known), one positive unit over both
    sides for an abnormal scan whose sides are unknown."""
    units: list[Unit] = []
    for sc in scans:
        unknown = [b for b in sc.bags.values() if b.label is None]
        for b in sc.bags.values():
            if b.label is None or len(b.images) == 0:
                continue
            idx = np.arange(len(b.images))
            if b.image_labels is not None and (b.image_labels != UNKNOWN).any():
                keep = idx[b.image_labels != UNKNOWN]
                units.append(Unit("images", int(b.label), [(b, keep)], b.image_labels[keep].astype(np.float32)))
            else:
                units.append(Unit("bag", int(b.label), [(b, idx)]))
        if unknown:
            if sc.label != 1:
                raise ValueError(f"scan {sc.scan}: a normal scan has no unknown sides")
            units.append(Unit("bag", 1, [(b, np.arange(len(b.images))) for b in unknown if len(b.images)]))
    return [u for u in units if u.size]
