"""Which series are not CT scans to import, with the reason shown in the import report."""
from __future__ import annotations

import numpy as np

from ..geometry import AXIAL_MIN_COS  # one definition, shared with the NIfTI entry
from .series_group import SeriesGroup
from .headers import DIRECTORY_SOP_CLASS, SECONDARY_CAPTURE_PREFIX

MIN_SLICES = 3  # a 2.5D image needs a slice and its two neighbours
_NON_IMAGE_SOP = {
    "1.2.840.10008.5.1.4.1.1.88.67": "dose report (structured report)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT dose",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT structure set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT plan",
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation",
    DIRECTORY_SOP_CLASS: "DICOMDIR (media directory)",
}


DIRECTION_TOLERANCE = 0.01  # |length - 1| and |row . column| allowed in ImageOrientationPatient (rounding)


def _values(values) -> str:
    return "\\".join(f"{v:g}" for v in values)


def geometry_problem(orientation, pixel_spacing) -> str | None:
    """Why numeric ImageOrientationPatient and PixelSpacing are no image plane, or None: the orientation must be
    two unit, perpendicular direction cosines and the spacing two positive numbers. A negative spacing flipped the
    stored image (left and right swapped), a zero one raised 'singular affine' from deep in the stacking, and a
    zero or doubled orientation was 'non-axial (slice normal 0.00 0.00 0.00)' or twice the size in mm."""
    if orientation is not None:
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
        if (abs(np.linalg.norm(row) - 1) > DIRECTION_TOLERANCE or abs(np.linalg.norm(col) - 1) > DIRECTION_TOLERANCE
                or abs(float(row @ col)) > DIRECTION_TOLERANCE):
            return (f"ImageOrientationPatient {_values(orientation)} is not two unit, "
                    "perpendicular direction cosines: geometry unknown")
    if pixel_spacing is not None and min(pixel_spacing) <= 0:
        return f"PixelSpacing {_values(pixel_spacing)} is not two positive numbers: geometry unknown"
    return None


def slice_normal(orientation) -> np.ndarray:
    o = np.asarray(orientation, float)
    n = np.cross(o[:3], o[3:6])
    return n / (np.linalg.norm(n) or 1.0)


def exclusion_reason(group: SeriesGroup, min_slices: int = MIN_SLICES) -> str | None:
    """Why this series is not imported as a scan, or None when it is a usable CT series."""
    h = group.first
    sop = h.sop_class
    if sop in _NON_IMAGE_SOP:
        return f"not an image series: {_NON_IMAGE_SOP[sop]}"
    if h.modality in ("SR", "KO", "PR", "RTDOSE", "RTSTRUCT", "RTPLAN", "REG", "SEG", "DOC"):
        return f"not an image series: modality {h.modality}"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX) or (h.modality == "CT" and "SECONDARY" in h.image_type):
        # before the modality: a secondary capture often has none, or OT ("non-CT modality (none)" said less)
        return "secondary capture (derived screenshot, not a CT acquisition)"
    if h.modality != "CT":
        return f"non-CT modality {h.modality or '(none)'}"
    if any(t in ("LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW") for t in h.image_type) or any(
        w in str(h.meta.get("SeriesDescription", "")).upper() for w in ("LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW")
    ):
        return "localizer/scout image"
    if "DOSE" in str(h.meta.get("SeriesDescription", "")).upper() and group.frame_count <= 2:
        return "dose report image"
    if not h.has_pixels or not h.rows or not h.columns:
        return "no pixel data"
    if h.orientation is None or h.pixel_spacing is None:  # the same kind: a series without its geometry
        which = [n for n, v in (("ImageOrientationPatient", h.orientation), ("PixelSpacing", h.pixel_spacing))
                 if v is None]
        return f"{' and '.join(which)} missing or not numbers: geometry unknown"
    problem = geometry_problem(h.orientation, h.pixel_spacing)
    if problem:
        return problem
    if abs(slice_normal(h.orientation)[2]) < AXIAL_MIN_COS:
        return "non-axial series (slice normal {:.2f} {:.2f} {:.2f})".format(*slice_normal(h.orientation))
    if group.frame_count < min_slices:
        return f"too short for 2.5D images: {group.frame_count} slice(s), need at least {min_slices}"
    other_units = sorted({i.value_units for i in group.instances} - {"", "HU"})
    if other_units:  # e.g. dcmtk's lossy JPEG: values rescaled into 0-4095 and RescaleType US
        return (f"stored values are not Hounsfield units (RescaleType {', '.join(other_units)}): a derived map or a "
                "rescaled copy (dcmtk's lossy JPEG writes US); import the original series")
    return None
