"""``make_patient``: one synthetic CT scan in memory (volume, ground truth, masks)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.ml.geometry import Box, voxels_to_box
from inference.ml.volume import Volume

from .acquisition import COVERAGE, Acquisition, draw_acquisition
from .anatomy import Anatomy, draw, gland_block, paint_patient
from .canvas import Canvas
from .lesions import LesionSpec, draw_lesion, paint_lesion
from .tissues import LABEL_OF


@dataclass
class LesionTruth:
    """A lesion as the ground truth has it: LPS centre (mm), diameters (mm), noiseless mean HU, its box."""

    side: str
    type: str
    centre: tuple[float, float, float]
    diameters_mm: tuple[float, float, float]
    mean_hu: float
    box: Box | None


@dataclass
class Truth:
    """Per side ('R', 'L') the box of the gland with its lesions (None when the gland is not in the scan)."""

    glands: dict[str, Box | None]
    lesions: list[LesionTruth]
    upper_poles: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # kidney upper poles, LPS mm
    gland_shapes: dict[str, str] = field(default_factory=dict)


@dataclass
class SyntheticScan:
    """``volume``: int16 HU, LPS affine, axial slices with k increasing superiorly. ``labels``: uint8 tissue
    labels (``tissues.LABELS``) of the noiseless rendering; ``masks``: 'gland_R', 'gland_L', 'lesion_R',
    'lesion_L' boolean arrays (absent when empty)."""

    seed: int
    label: str
    volume: Volume
    truth: Truth
    acquisition: Acquisition
    anatomy: Anatomy
    labels: np.ndarray
    masks: dict[str, np.ndarray]
    noiseless: np.ndarray | None = None


def _box_of(mask: np.ndarray, affine: np.ndarray) -> Box | None:
    if not mask.any():
        return None
    idx = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]  # k, j, i
    lo = [int(idx[2][0]), int(idx[1][0]), int(idx[0][0])]
    hi = [int(idx[2][-1]), int(idx[1][-1]), int(idx[0][-1])]
    return voxels_to_box(affine, lo, hi)


def make_patient(seed: int, *, abnormal: bool, coverage: str | None = None, slice_spacing_mm: float | None = None,
                 pixel_spacing_mm: float | None = None, matrix: int | None = None, phase: str | None = None,
                 lesion: dict | None = None, profile: str = "default", keep_noiseless: bool = False) -> SyntheticScan:
    """Render one patient. ``coverage`` one of ``acquisition.COVERAGE`` (None: drawn from the profile);
    ``lesion`` optionally fixes ``{"side": "R"|"L"|"B", "diameter_mm": float, "type": str}`` for abnormal
    patients. Everything random comes from ``seed``; normal and abnormal patients are drawn identically,
    the abnormal ones then get their lesion(s)."""
    rng = np.random.default_rng(seed)
    anat = draw(rng)
    acq = draw_acquisition(rng, profile, coverage=coverage, slice_spacing_mm=slice_spacing_mm,
                           pixel_spacing_mm=pixel_spacing_mm, matrix=matrix, phase=phase,
                           body_width_mm=2 * (160 * anat.sx + anat.fat * 0.8))
    les_rng = np.random.default_rng([seed, 7])  # lesions draw from their own stream: same anatomy either way
    noise_rng = np.random.default_rng([seed, 11])
    lesion = dict(lesion or {})
    sides: list[str] = []
    if abnormal:
        side = lesion.get("side") or ("B" if les_rng.random() < 0.1 else str(les_rng.choice(["R", "L"])))
        sides = ["R", "L"] if side == "B" else [side]
    specs: list[LesionSpec] = [draw_lesion(les_rng, anat.glands[s], diameter_mm=lesion.get("diameter_mm"),
                                           type_=lesion.get("type")) for s in sides]

    n = acq.matrix
    px = acq.pixel_mm
    x0 = -px * (n - 1) / 2
    w0, w1 = COVERAGE[acq.coverage]
    w0, w1 = w0 * anat.sz, w1 * anat.sz
    z_lo = w0 + acq.shift[2]
    nk = int(np.floor((w1 - w0) / acq.slice_mm)) + 1
    zs = z_lo + acq.slice_mm * np.arange(nk)
    xs = x0 + px * np.arange(n)
    cv = Canvas(xs, xs.copy(), zs, acq.theta, acq.shift)
    paint_patient(cv, anat, acq.phase)

    masks: dict[str, np.ndarray] = {}
    for side, g in anat.glands.items():
        blk = gland_block(cv, g)
        if blk is not None:
            m = np.zeros(cv.hu.shape, bool)
            m[blk] = cv.label[blk] == LABEL_OF["adrenal"]
            if m.any():
                masks[f"gland_{side}"] = m
    lesion_truth: list[LesionTruth] = []
    affine = np.eye(4)
    affine[0, 0] = affine[1, 1] = px
    affine[2, 2] = acq.slice_mm
    affine[:3, 3] = (x0, x0, z_lo)
    for spec in specs:
        mask = paint_lesion(cv, spec)
        if mask is not None:
            masks[f"lesion_{spec.side}"] = mask | masks.get(f"lesion_{spec.side}", False)
            gm = masks.get(f"gland_{spec.side}")
            if gm is not None:
                gm &= ~mask
        centre = body_to_lps(cv, spec.centre)
        lesion_truth.append(LesionTruth(spec.side, spec.type, tuple(float(c) for c in centre),
                                        tuple(float(2 * s) for s in spec.semi), round(spec.mean_hu, 1),
                                        _box_of(mask, affine) if mask is not None else None))
    glands: dict[str, Box | None] = {}
    for side in ("R", "L"):
        m = masks.get(f"gland_{side}")
        lm = masks.get(f"lesion_{side}")
        both = m if lm is None else (lm if m is None else (m | lm))
        glands[side] = _box_of(both, affine) if both is not None else None

    noiseless = cv.hu
    rs = np.random.default_rng([seed, 13])
    # mild shading (cupping) and CT-like noise: white noise smoothed along rows and columns
    r2 = (cv.U ** 2 + cv.V ** 2) / (200.0 ** 2)
    shade = (rs.uniform(-12, 12) * (r2 - 0.5)).astype(np.float32)
    out = noiseless + shade[None]
    noise = noise_rng.standard_normal(cv.hu.shape, dtype=np.float32)
    noise[:, :, 1:] += noise[:, :, :-1]
    noise[:, 1:, :] += noise[:, :-1, :]
    noise *= np.float32(acq.noise_hu / 2.0)
    out += noise
    del noise
    np.clip(out, -1024, 3071, out=out)
    arr = np.rint(out).astype(np.int16)
    upper = {s: tuple(float(c) for c in body_to_lps(cv, g.upper_pole)) for s, g in anat.glands.items()}
    truth = Truth(glands=glands, lesions=lesion_truth, upper_poles=upper,
                  gland_shapes={s: g.shape for s, g in anat.glands.items()})
    return SyntheticScan(seed=seed, label="abnormal" if abnormal else "normal", volume=Volume(arr, affine),
                         truth=truth, acquisition=acq, anatomy=anat, labels=cv.label, masks=masks,
                         noiseless=noiseless if keep_noiseless else None)


def body_to_lps(cv: Canvas, p) -> np.ndarray:
    """A body-frame point (u, v, w) in LPS mm."""
    u, v, w = (float(x) for x in p)
    return np.array([cv.c * u - cv.s * v + cv.t[0], cv.s * u + cv.c * v + cv.t[1], w + cv.t[2]])
