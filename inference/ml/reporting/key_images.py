"""Key images: an axial slice of a volume at a given LPS z, resampled onto a patient-aligned grid (patient's
right on the image's left, anterior at the top), windowed, with the crop boxes and captions burned in."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import map_coordinates

from ..geometry import Box, lps_to_voxel, volume_extent
from ..volume import Volume
from .findings import Findings

WINDOW = (40.0, 400.0)  # abdomen: centre, width (HU)
MIN_SIDE_PX = 512  # small or coarse scans are upsampled so text and boxes stay legible
MAX_SIDE_PX = 1024
COLOURS = {"abnormal": (255, 60, 60), "normal": (80, 220, 120), None: (255, 210, 0)}
CAUTION_LINE = "CAUTION: scan outside the model's validated acquisition range - see the report"


@dataclass
class KeyImage:
    """An RGB image ``[rows, columns, 3]`` uint8 of the axial plane at ``z_mm``: column ``c``, row ``r`` lie at
    LPS ``(x0 + c * spacing, y0 + r * spacing, z_mm)`` (columns towards the patient's left, rows posterior)."""

    rgb: np.ndarray
    z_mm: float
    x0: float
    y0: float
    spacing_mm: float


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _grid(volume: Volume) -> tuple[float, float, float, int, int]:
    ext = volume_extent(volume.affine, volume.shape)
    width, height = ext.size_mm[0], ext.size_mm[1]
    native = float(min(volume.spacing[0], volume.spacing[1]))
    longest = max(width, height, native)
    spacing = min(native, longest / MIN_SIDE_PX)
    spacing = max(spacing, longest / MAX_SIDE_PX)
    cols = int(np.floor(width / spacing)) + 1
    rows = int(np.floor(height / spacing)) + 1
    return ext.lps_min[0], ext.lps_min[1], spacing, rows, cols


def resample_axial(volume: Volume, z_mm: float) -> tuple[np.ndarray, float, float, float]:
    """HU of the axial plane at LPS ``z_mm`` (linear interpolation, -1024 outside): ``(hu [rows, cols], x0, y0,
    spacing)``."""
    x0, y0, spacing, rows, cols = _grid(volume)
    ys, xs = np.mgrid[0:rows, 0:cols].astype(float)
    xyz = np.stack([x0 + xs * spacing, y0 + ys * spacing, np.full_like(xs, z_mm)], axis=-1)
    ijk = lps_to_voxel(volume.affine, xyz.reshape(-1, 3))
    coords = ijk[:, ::-1].T  # (k, j, i) order of the array
    hu = map_coordinates(volume.array.astype(np.float32), coords, order=1, mode="constant", cval=-1024.0)
    return hu.reshape(rows, cols), x0, y0, spacing


def render_axial(volume: Volume, z_mm: float, findings: Findings, *, title: str = "",
                 window: tuple[float, float] = WINDOW) -> KeyImage:
    """The slice at ``z_mm`` windowed to ``window`` (centre, width HU) with each side's crop box drawn where the
    box spans ``z_mm`` (red: the side judged abnormal, green: normal), the side scores, orientation letters,
    ``title``, a caution line when the findings carry cautions, and the research-tool statement burned in. No
    patient identifiers are drawn."""
    hu, x0, y0, spacing = resample_axial(volume, z_mm)
    centre, width = window
    grey = np.clip((hu - (centre - width / 2)) / width * 255.0, 0, 255).astype(np.uint8)
    img = Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    draw = ImageDraw.Draw(img)
    rows, cols = grey.shape
    size = max(12, cols // 40)
    font, small = _font(size), _font(max(10, size - 3))
    half_slice = float(volume.spacing[2]) / 2
    for side in findings.sides.values():
        box = side.box
        if box is None or not (box.lps_min[2] - half_slice <= z_mm <= box.lps_max[2] + half_slice):
            continue
        colour = COLOURS["abnormal" if side.abnormal else "normal" if side.abnormal is False else None]
        c0, r0 = _pixel(box.lps_min, x0, y0, spacing)
        c1, r1 = _pixel(box.lps_max, x0, y0, spacing)
        draw.rectangle([c0, r0, c1, r1], outline=colour, width=max(2, cols // 256))
        label = side.side + (f" {side.score:.2f}" if side.score is not None else "")
        draw.text((c0 + 3, max(0, r0 - size - 4)), label, fill=colour, font=font)
    draw.text((4, rows // 2), "R", fill=(255, 255, 255), font=font)
    draw.text((cols - size, rows // 2), "L", fill=(255, 255, 255), font=font)
    lines = [title] if title else []
    lines.append(f"z = {z_mm:.1f} mm; W/L {width:.0f}/{centre:.0f}")
    for n, line in enumerate(lines):
        draw.text((4, 4 + n * (size + 3)), line, fill=(255, 255, 0), font=font)
    if findings.cautions:
        draw.text((4, rows - 3 * (size + 2)), CAUTION_LINE, fill=(255, 160, 0), font=small)
    draw.text((4, rows - 2 * (size + 2)), "RESEARCH TOOL - NOT FOR DIAGNOSTIC USE", fill=(255, 255, 0), font=small)
    draw.text((4, rows - (size + 2)), f"{findings.model.name} v{findings.model.version}", fill=(255, 255, 0),
              font=small)
    return KeyImage(np.asarray(img, dtype=np.uint8), float(z_mm), x0, y0, spacing)


def _pixel(xyz, x0: float, y0: float, spacing: float) -> tuple[float, float]:
    return (xyz[0] - x0) / spacing, (xyz[1] - y0) / spacing


def key_slices(findings: Findings, limit: int) -> list[float]:
    """Up to ``limit`` flagged slices (LPS z), the highest-scoring ones, in cranio-caudal order."""
    flagged = set(round(z, 2) for z in findings.flagged_slices_mm)
    if not flagged or limit <= 0:
        return []
    scores = {round(z, 2): p for z, p in findings.slice_scores}
    ranked = sorted(flagged, key=lambda z: -scores.get(z, 0.0))[:limit]
    return sorted(ranked, reverse=True)


def box_polygons(box: Box) -> list[np.ndarray]:
    """The box as two closed axial rectangles ``[5, 3]`` (LPS mm) at its lowest and highest z: the planar
    polygons of an SCOORD3D volume surface."""
    (x0, y0, z0), (x1, y1, z1) = box.lps_min, box.lps_max
    out = []
    for z in (z0, z1):
        out.append(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z], [x0, y0, z]], dtype=float))
    return out
