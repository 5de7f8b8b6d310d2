"""The acquisitions a model was trained on, and cautions for a scan judged outside them.

A model is validated only on what its training scans looked like (voxel size; and whether a contrast agent
was given, as far as the DICOM headers record it). The detector behind the ``fast`` preset
loses accuracy on coarse reconstructions: zero-shot scan AUC 0.99 at 0.6-0.95 mm pixels, 0.86 when the same
generated patients are reconstructed at 3 mm (README, "Model quality"). A verdict on a scan whose voxel size lies
outside its run's training range therefore says so, beside the verdict. The verdict itself is unchanged.

Spacings are a volume's ``(column, row, slice)`` voxel size in mm (:attr:`inference.ml.volume.Volume.spacing`);
in-plane pixel spacing is the coarser of the first two.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

TOLERANCE = 1.25  # a scan up to 25% finer or coarser than the training range is within it


def acquisition_range(spacings: Iterable[Sequence[float]], contrast: Iterable[bool | None] = ()) -> dict | None:
    """``{"pixel_mm": [lo, hi], "slice_mm": [lo, hi], "scans": n, "contrast": {"recorded": a, "none": b,
    "unknown": c}}`` over the ``(column, row, slice)`` spacings (mm) of a run's training scans and, per scan,
    whether its DICOM header records a contrast agent (:func:`contrast_of`: True, False, or None when there is no
    header to tell, e.g. a NIfTI); None when there are no scans. Raises ValueError for a spacing that is not three
    positive numbers."""
    pixel, slices = [], []
    for s in spacings:
        if len(s) != 3 or not all(float(v) > 0 for v in s):
            raise ValueError(f"a spacing must be three positive millimetre values, not {list(s)}")
        pixel.append(max(float(s[0]), float(s[1])))
        slices.append(float(s[2]))
    if not pixel:
        return None
    states = list(contrast)
    return {"pixel_mm": [round(min(pixel), 3), round(max(pixel), 3)],
            "slice_mm": [round(min(slices), 3), round(max(slices), 3)], "scans": len(pixel),
            "contrast": {"recorded": states.count(True), "none": states.count(False), "unknown": states.count(None)}}


def contrast_of(contrast_agent: str | None, from_dicom: bool) -> bool | None:
    """Whether a scan's header records a contrast agent (ContrastBolusAgent, DICOM PS3.3 C.7.6.4): True when it
    names one, False when a DICOM header names none, None when there is no DICOM header to tell (a NIfTI)."""
    if not from_dicom:
        return None
    return bool((contrast_agent or "").strip())


def acquisition_cautions(spacing: Sequence[float], trained: Mapping | None,
                         tolerance: float = TOLERANCE, contrast: bool | None = None) -> list[str]:
    """Why a verdict on a scan of ``spacing`` (``(column, row, slice)`` mm) is less certain than the model's
    validation: one sentence for each of pixel and slice spacing that lies outside the ``trained`` range
    (:func:`acquisition_range`) by more than ``tolerance`` (a factor), and one when the scan's header records a
    contrast agent (``contrast`` True) while none of the training scans' did, or records none (False) while all of
    theirs did (scans of unknown contrast on either side give no caution). Empty when it is inside, or when the
    range is unknown (``trained`` None: a run made before ranges were recorded)."""
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
    seen = trained.get("contrast") or {}
    if contrast is not None and seen and not seen.get("unknown"):
        if contrast and not seen.get("recorded"):
            out.append(f"the scan's header records a contrast agent and none of the model's {seen.get('none', 0)} "
                       "training scans did: the model was not validated on contrast-enhanced scans, so this "
                       "verdict is less certain")
        elif not contrast and not seen.get("none"):
            out.append(f"the scan's header records no contrast agent and all of the model's {seen.get('recorded', 0)} "
                       "training scans did: the model was not validated on unenhanced scans, so this verdict is "
                       "less certain")
    return out
