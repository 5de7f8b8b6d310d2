"""The acquisitions a model was trained on, and cautions for a scan judged outside them.

A model is validated only on what its training scans looked like. The detector behind the ``fast`` preset
loses accuracy on coarse reconstructions: zero-shot scan AUC 0.99 at 0.6-0.95 mm pixels, 0.86 when the same
generated patients are reconstructed at 3 mm (README, "Model quality"). A verdict on a scan whose voxel size lies
outside its run's training range therefore says so, beside the verdict. The verdict itself is unchanged.

Spacings are a volume's ``(column, row, slice)`` voxel size in mm (:attr:`inference.ml.volume.Volume.spacing`);
in-plane pixel spacing is the coarser of the first two.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

TOLERANCE = 1.25  # a scan up to 25% finer or coarser than the training range is within it


def acquisition_range(spacings: Iterable[Sequence[float]]) -> dict | None:
    """``{"pixel_mm": [lo, hi], "slice_mm": [lo, hi], "scans": n}`` over the ``(column, row, slice)``
    spacings (mm) of a run's training scans, or None when there are none. Raises ValueError for a spacing
    that is not three positive numbers."""
    pixel, slices = [], []
    for s in spacings:
        if len(s) != 3 or not all(float(v) > 0 for v in s):
            raise ValueError(f"a spacing must be three positive millimetre values, not {list(s)}")
        pixel.append(max(float(s[0]), float(s[1])))
        slices.append(float(s[2]))
    if not pixel:
        return None
    return {"pixel_mm": [round(min(pixel), 3), round(max(pixel), 3)],
            "slice_mm": [round(min(slices), 3), round(max(slices), 3)], "scans": len(pixel)}


def acquisition_cautions(spacing: Sequence[float], trained: Mapping | None,
                         tolerance: float = TOLERANCE) -> list[str]:
    """Why a verdict on a scan of ``spacing`` (``(column, row, slice)`` mm) is less certain than the model's
    validation: one sentence for each of pixel and slice spacing that lies outside the ``trained`` range
    (:func:`acquisition_range`) by more than ``tolerance`` (a factor). Empty when it is inside, or when the range is
    unknown (``trained`` None: a run made before ranges were recorded)."""
    if not trained:
        return []
    out = []
    for name, what, value in (("pixel_mm", "pixel spacing", max(float(spacing[0]), float(spacing[1]))),
                              ("slice_mm", "slice spacing", float(spacing[2]))):
        lo, hi = trained[name]
        if value > hi * tolerance or value < lo / tolerance:
            side = "coarser" if value > hi else "finer"
            out.append(f"{what} {value:.2f} mm is {side} than the model's training scans ({lo:.2f}-{hi:.2f} mm, "
                       f"{trained.get('scans', '?')} scans): the model was not validated on such scans, so this "
                       "verdict is less certain")
    return out
