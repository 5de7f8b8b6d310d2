"""A verdict for one scan from a fold ensemble: 2.5D images in, probability, fraction, per-side scores,
flagged slices and per-slice scores out.

Images come from ``inference.ml.images25d.build_images`` (the same code as training) and the ensemble from
``inference.ml.training.load_ensemble`` (``predict`` returns ``[N, n_folds]`` probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .calibration import Calibrator
from .evidence import image_evidence
from .mil import scan_score, side_score
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


# --- per-gland verdicts ------------------------------------------------------------------------------------

@dataclass
class GlandVerdict:
    """A per-gland model's verdict: ``score`` (raw, max of the sides' top-k means) decides against
    ``operating_value``; ``probability`` is the calibrated score (``calibrator``; the raw score without one).

    ``probability_cutoff`` is the operating value on the probability scale (the calibrated operating value): a
    clinician reads "abnormal" against the probability shown, so the pages show this cut-off beside it.

    ``sides[s]`` is the side's calibrated probability (the app's ``Prediction.sides``); ``side_details[s]``:
    ``{"score", "probability", "probability_cutoff", "verdict", "flagged_slices_mm", "slice_scores": [[z_mm, p],
    ...]}``;
    ``evidence``: class-activation maps of the flagged images, highest first (``inference.ml.evidence``);
    ``fraction``: the original image vote over both sides' images, for comparison."""

    probability: float
    score: float
    fraction: float
    verdict: str
    operating_value: float
    sides: dict[str, float]
    side_details: dict[str, dict]
    flagged_slices_mm: list[float]
    slice_scores: list[list[float]]
    evidence: list[dict] = field(default_factory=list)
    fold_probabilities: list[float] = field(default_factory=list)
    probability_cutoff: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def gland_verdict(side_images: dict, ensemble, operating_value: float, *, top_k: int = 2, calibrator=None,
                  evidence: int = 3, flag_at: float | None = None) -> GlandVerdict:
    """Judge a scan from ``{"R": SideImages, "L": SideImages}`` (``inference.ml.images25d.build_scan_images``)
    with a per-gland fold ensemble: both sides in one batched pass (maps from the same pass), each side
    scored by the mean of its ``top_k`` highest image probabilities (fold mean), the scan by the max of its
    sides; abnormal when that reaches ``operating_value``. An image is flagged when its probability reaches
    ``flag_at`` (default: the operating value, so an abnormal side, whose top-k mean reaches it, always has at
    least one flagged image to show); ``evidence`` maps (at most; 0 for none) for the highest flagged images.
    Raises ValueError without images.
    """
    cal = calibrator if calibrator is not None else Calibrator()
    flag_at = float(operating_value) if flag_at is None else float(flag_at)
    cutoff = round(float(cal([float(operating_value)])[0]), 6)
    sides = [s for s in ("R", "L") if s in side_images and len(side_images[s].images)]
    if not sides:
        raise ValueError("no 2.5D images to judge")
    batch = np.concatenate([side_images[s].images for s in sides])
    probs, maps = ensemble.predict_maps(batch, maps=evidence > 0) if hasattr(ensemble, "predict_maps") \
        else (np.asarray(ensemble.predict(batch)), None)
    probs = np.asarray(probs, float).reshape(len(batch), -1)
    mean = probs.mean(axis=1)
    details, scores, cursor, flagged = {}, {}, 0, []
    for s in sides:
        si = side_images[s]
        n = len(si.images)
        p = mean[cursor:cursor + n]
        scores[s] = side_score(p, top_k)
        prob = float(cal([scores[s]])[0])
        details[s] = {"score": round(scores[s], 6), "probability": round(prob, 6), "probability_cutoff": cutoff,
                      "verdict": verdict_of(scores[s], operating_value),
                      "flagged_slices_mm": [round(float(z), 2) for z, q in zip(si.z_mm, p) if q >= flag_at],
                      "slice_scores": [[round(float(z), 2), round(float(q), 4)] for z, q in zip(si.z_mm, p)]}
        flagged += [(float(q), s, i, cursor + i) for i, q in enumerate(p) if q >= flag_at]
        cursor += n
    score = scan_score(scores)
    ev = []
    if maps is not None:
        for q, s, i, row in sorted(flagged, reverse=True)[:evidence]:
            ev.append(image_evidence(side_images[s], i, maps[row], q))
    all_z = sorted({z for s in sides for z in details[s]["flagged_slices_mm"]})
    return GlandVerdict(
        probability=round(float(cal([score])[0]), 6), score=round(score, 6),
        fraction=round(float(np.mean(mean >= IMAGE_VOTE)), 6),
        verdict=verdict_of(score, operating_value), operating_value=float(operating_value),
        sides={s: details[s]["probability"] for s in sides}, side_details=details, flagged_slices_mm=all_z,
        slice_scores=sorted([zp for s in sides for zp in details[s]["slice_scores"]]),
        evidence=ev, probability_cutoff=cutoff,
        fold_probabilities=[round(float(np.max([side_score(probs[c0:c0 + len(side_images[s].images), f], top_k)
                                                for s, c0 in _offsets(side_images, sides)])), 6)
                            for f in range(probs.shape[1])],
    )


def _offsets(side_images: dict, sides: list[str]) -> list[tuple[str, int]]:
    out, c = [], 0
    for s in sides:
        out.append((s, c))
        c += len(side_images[s].images)
    return out
