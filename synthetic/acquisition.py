"""Acquisition parameters per profile: matrix, pixel and slice spacing, coverage, phase, noise, position."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tissues import PHASES

# body-frame w ranges (mm, w = 0 about L1) of each coverage
COVERAGE: dict[str, tuple[float, float]] = {
    "abdomen": (-200.0, 95.0),
    "upper_abdomen": (-75.0, 95.0),
    "cap": (-350.0, 300.0),
    "chest_only": (80.0, 300.0),
    "pelvis_only": (-370.0, -140.0),
}

PROFILES: dict[str, dict] = {
    # as the issue asks: 512x512, 0.6-0.95 mm pixels, 1-5 mm slices (thin slices rarer: they cost the most),
    # every coverage; chest-abdomen-pelvis only with >= 2.5 mm slices
    "default": dict(matrix=512, pixel=(0.6, 0.95), slices=[1.0, 1.25, 2.0, 2.5, 3.0, 5.0],
                    slice_p=[0.06, 0.06, 0.13, 0.25, 0.25, 0.25],
                    coverage={"abdomen": 0.45, "upper_abdomen": 0.2, "cap": 0.15, "chest_only": 0.1,
                              "pelvis_only": 0.1}, extras=0.3),
    # `make run`: quick to generate, import, propose and train on 2 cores; always covers the adrenals
    "demo": dict(matrix=512, pixel=(0.7, 0.9), slices=[3.0, 5.0], slice_p=[0.4, 0.6],
                 coverage={"abdomen": 0.5, "upper_abdomen": 0.5}, extras=0.25),
    # tests: 256x256 with large pixels, 5 mm slices, upper abdomen only (~35 slices)
    "tiny": dict(matrix=256, pixel=(1.45, 1.6), slices=[5.0], slice_p=[1.0],
                 coverage={"upper_abdomen": 1.0}, extras=0.5),
}


@dataclass
class Acquisition:
    matrix: int
    pixel_mm: float
    slice_mm: float
    coverage: str
    phase: str
    noise_hu: float
    theta: float
    shift: tuple[float, float, float]
    kvp: int
    kernel: str
    profile: str = "default"


def draw_acquisition(rng: np.random.Generator, profile: str = "default", *, coverage: str | None = None,
                     slice_spacing_mm: float | None = None, pixel_spacing_mm: float | None = None,
                     matrix: int | None = None, phase: str | None = None, body_width_mm: float = 340.0) -> Acquisition:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    p = PROFILES[profile]
    covs = list(p["coverage"])
    cov = coverage or str(rng.choice(covs, p=[p["coverage"][c] for c in covs]))
    if cov not in COVERAGE:
        raise ValueError(f"unknown coverage {cov!r}; expected one of {sorted(COVERAGE)}")
    sl = float(rng.choice(p["slices"], p=p["slice_p"]))
    if cov == "cap" and profile == "default":
        sl = max(sl, 2.5)
    matrix = int(matrix or p["matrix"])
    lo, hi = p["pixel"]
    fit = (body_width_mm + 25) / matrix  # the field of view is chosen to fit the patient when it can
    px = float(rng.uniform(min(max(lo, fit), hi), hi))
    ph = phase or str(rng.choice(PHASES, p=[0.25, 0.2, 0.55]))
    if ph not in PHASES:
        raise ValueError(f"unknown phase {ph!r}; expected one of {PHASES}")
    return Acquisition(matrix=matrix, pixel_mm=float(pixel_spacing_mm or px), slice_mm=float(slice_spacing_mm or sl),
                       coverage=cov, phase=ph, noise_hu=float(rng.uniform(8, 25)),
                       theta=float(np.deg2rad(rng.uniform(-6, 6))),
                       shift=(float(rng.uniform(-15, 15)), float(rng.uniform(-35, -15)), float(rng.uniform(-500, -300))),
                       kvp=int(rng.choice([100, 120, 120, 140])), kernel=str(rng.choice(["B30f", "STANDARD", "FC08"])),
                       profile=profile)
