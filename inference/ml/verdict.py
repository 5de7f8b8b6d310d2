"""A verdict for one scan from a fold ensemble: 2.5D images in, probability, fraction, per-side scores,
flagged slices and per-slice scores out.

Images come from ``inference.ml.images25d.build_images`` (the same code as training) and the ensemble from
``inference.ml.training.load_ensemble`` (``predict`` returns ``[N, n_folds]`` probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .operating_value import IMAGE_VOTE, aggregate

# --- the verdict ----------------------------------------------------------------------------------------

@dataclass
class ScanVerdict:
    probability: float
    fraction: float
    verdict: str
    operating_value: float
    sides: dict[str, float]
    flagged_slices_mm: list[float]
    slice_scores: list[list[float]]
    fold_probabilities: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def verdict_of(score: float, operating_value: float) -> str:
    """The rule of the original study, for any scan score: abnormal when it reaches the operating value."""
    return "abnormal" if score >= operating_value else "normal"


def blank_side(images: np.ndarray, side: str) -> np.ndarray:
    """Copies with one side's half set to 0 (the bottom of the HU window): right is the image's left half."""
    out = images.copy()
    half = images.shape[-1] // 2
    if side == "R":
        out[..., :half] = 0.0
    else:
        out[..., half:] = 0.0
    return out


def scan_verdict(images: np.ndarray, z_mm: np.ndarray, ensemble, operating_value: float,
                 aggregator: str = "fraction", with_sides: bool = True) -> ScanVerdict:
    """Run the ensemble once over the images and, for per-side scores, over copies with the other side
    blanked (one batched pass); verdict by the original rule at ``operating_value``."""
    n = len(images)
    if n == 0:
        raise ValueError("no 2.5D images to judge")
    batch = np.concatenate([images, blank_side(images, "L"), blank_side(images, "R")]) if with_sides else images
    probs = np.asarray(ensemble.predict(batch), float)
    if probs.ndim == 1:
        probs = probs[:, None]
    mean = probs.mean(axis=1)
    p_img = mean[:n]
    score = aggregate(p_img, aggregator)
    sides = {}
    if with_sides:
        sides = {"R": round(aggregate(mean[n:2 * n], aggregator), 4), "L": round(aggregate(mean[2 * n:], aggregator), 4)}
    return ScanVerdict(
        probability=round(float(p_img.mean()), 6),
        fraction=round(aggregate(p_img, "fraction"), 6),
        verdict=verdict_of(score, operating_value),
        operating_value=float(operating_value),
        sides=sides,
        flagged_slices_mm=[round(float(z), 2) for z, p in zip(z_mm, p_img) if p >= IMAGE_VOTE],
        slice_scores=[[round(float(z), 2), round(float(p), 4)] for z, p in zip(z_mm, p_img)],
        fold_probabilities=[round(float(v), 6) for v in probs[:n].mean(axis=0)],
    )
