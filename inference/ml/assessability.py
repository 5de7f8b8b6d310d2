"""Can a scan be judged at all: is it CT in Hounsfield units? (Whether it covers the adrenal region is
decided by the box proposals, :func:`inference.ml.proposals.propose`.)"""
from __future__ import annotations

import numpy as np

from .volume import Volume


def check_ct(volume: Volume, modality: str | None = None) -> str:
    """'' when the volume looks like CT in Hounsfield units, else the reason it is not judged."""
    if modality and modality.upper() not in ("CT", ""):
        return f"not CT: modality is {modality}"
    a = volume.array
    if a.ndim != 3 or min(a.shape) < 3:
        return f"not a 3D volume: shape {a.shape}"
    sample = _sample(a)
    reason = hounsfield_reason(volume)
    if reason:
        return reason
    soft = np.mean((sample > -150) & (sample < 250))
    if soft < 0.05:
        return "not CT: too little soft tissue in the Hounsfield range"
    return ""


def _sample(a: np.ndarray) -> np.ndarray:
    return a[:: max(1, a.shape[0] // 16), ::4, ::4].astype(np.float32)


def hounsfield_reason(volume: Volume) -> str:
    """'' when the volume's values look like Hounsfield units (some air below -500 HU, as every CT field of view
    holds), else why not (a series whose rescale slope/intercept is missing stores air at 0)."""
    sample = _sample(volume.array)
    if sample.size == 0:
        return "not CT: an empty volume"
    air = np.mean(sample < -500)
    if sample.min() > -500 or air < 0.02:
        return "not CT: no air in Hounsfield units (values from %.0f to %.0f)" % (sample.min(), sample.max())
    return ""
