"""Adrenal lesions: ovoid masses arising from a gland limb, with type-specific texture."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Gland
from .canvas import Canvas, ellipsoid
from .tissues import LABEL_OF, LESION_TYPES


@dataclass
class LesionSpec:
    """A lesion to paint (body frame); ``mean_hu`` is the design mean of its contents."""

    side: str
    type: str
    centre: np.ndarray
    semi: np.ndarray
    angle: float
    mean_hu: float
    phases: np.ndarray


def draw_lesion(rng: np.random.Generator, gland: Gland, *, diameter_mm: float | None = None,
                type_: str | None = None) -> LesionSpec:
    """Pick a point on a random limb and grow an ovoid around it (so it is contiguous with the gland)."""
    if diameter_mm is None:
        diameter_mm = rng.uniform(8, 12) if rng.random() < 0.4 else float(np.exp(rng.uniform(np.log(12), np.log(45))))
    type_ = type_ or str(rng.choice(list(LESION_TYPES), p=[0.3, 0.25, 0.15, 0.15, 0.15]))
    s, e, _ = gland.limbs[int(rng.integers(0, min(2, len(gland.limbs))))]
    p = s + rng.uniform(0.25, 0.9) * (e - s)
    d1 = float(diameter_mm)
    semi = np.array([d1, d1 * rng.uniform(0.75, 1.0), d1 * rng.uniform(0.75, 1.0)]) / 2
    # grow outwards from the limb (away from the gland's centre, across the limb) so the rest of the gland shows
    centroid = np.mean([q for a, b, _ in gland.limbs for q in (a, b)], axis=0)
    axis = (e - s) / np.linalg.norm(e - s)
    direction = (p - centroid) + rng.normal(0, 4, 3)
    direction -= axis * (direction @ axis)
    if np.linalg.norm(direction) < 1e-6:
        direction = np.cross(axis, [0.0, 0.0, 1.0])
    direction /= np.linalg.norm(direction)
    centre = p + direction * semi.min() * rng.uniform(0.55, 0.85)
    lo, hi = LESION_TYPES[type_]
    return LesionSpec(gland.side, type_, centre, semi, float(rng.uniform(0, np.pi)), float(rng.uniform(lo + 2, hi - 2)),
                      rng.uniform(0, 2 * np.pi, 3))


def paint_lesion(cv: Canvas, les: LesionSpec) -> np.ndarray | None:
    """Paint the lesion and return its boolean mask over the whole grid (None when outside the scan).
    Its contents are shifted so their noiseless mean is ``mean_hu`` exactly."""
    f, lo, hi = ellipsoid(les.centre, les.semi, les.angle)
    blk = cv.block(lo, hi)
    if blk is None:
        return None
    value = lesion_value(les)
    m, t = les.mean_hu, les.type
    before = cv.hu[blk].copy()
    cv.paint((f, lo, hi)[0], lo, hi, value, LABEL_OF["lesion"])
    u, vv, w = cv.coords(blk)
    d = f(u, vv, w)
    inside = (d >= 0) & (cv.label[blk] == LABEL_OF["lesion"])
    if not inside.any():
        cv.hu[blk] = before
        return None
    core = inside & (d >= 1.8) if t == "cyst" else inside
    if core.any():
        sub = cv.hu[blk]
        sub[core] += np.float32(m - float(sub[core].mean()))
    mask = np.zeros(cv.hu.shape, bool)
    mask[blk] = inside
    return mask


def lesion_value(les: LesionSpec):
    """HU of the lesion at (u, v, w) with ``d`` mm inside its surface, by type (before the mean is fixed)."""
    m, ph, t = les.mean_hu, les.phases, les.type
    rmin = float(les.semi.min())

    def tex(u, v, w):
        return (np.sin(0.45 * u + 0.3 * w + ph[0]) + np.sin(0.4 * v - 0.35 * w + ph[1])
                + np.sin(0.3 * u + 0.5 * v + ph[2])) / 3

    def value(u, v, w, d):
        if t == "heterogeneous_mass":
            rel = np.clip(d / rmin, 0, 1)
            return m + 15 - 35 * np.clip((rel - 0.35) / 0.35, 0, 1) + 6 * tex(u, v, w)
        if t == "cyst":
            return np.where(d < 1.8, 60.0, m)
        if t == "myelolipoma":
            return np.where(tex(u, v, w) > -0.15, -95.0, 35.0)
        return m + 3 * tex(u, v, w)

    return value
