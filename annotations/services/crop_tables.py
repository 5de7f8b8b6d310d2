"""Crop tables: the original study's pixel crop table in and out, and every box in millimetres out.

The original table has one row per gland: ``filename_nii, adrenal_LR, crop_x_min, crop_x_max, crop_y_min,
crop_y_max, crop_z_min, crop_z_max``. Its convention, as this module reads and writes it:

- ``filename_nii`` names the NIfTI file the indices refer to. For a scan imported from a NIfTI file that is
  the file's own name, and the indices are the file's own voxel grid (kept in ``Series.extra["source_grid"]``:
  the store puts every volume on its canonical LPS axes, which may permute and flip the file's); for a DICOM
  series it is
  ``<SeriesInstanceUID>.nii.gz``, meaning our stored volume (``Volume.file``; grid as the importer built it,
  slices in ascending patient position). The stored file name itself (``<hash>.nii.gz``) matches too.
- ``x, y, z`` are the NIfTI file's array axes as nibabel loads them (``img.get_fdata()[x, y, z]``), which
  are our voxel indices ``i`` (column), ``j`` (row), ``k`` (slice) — our arrays are ``[k, j, i]``.
- ``min`` is inclusive and ``max`` exclusive, as the notebook cropped with Python slices
  ``data[x_min:x_max, y_min:y_max, z_min:z_max]``; so the crop is voxels ``x_min .. x_max - 1``.
- ``adrenal_LR`` is ``R`` (patient right) or ``L`` (patient left); ``right``/``left`` are read too.

In millimetres a crop is the LPS box spanned by the centres of its voxels (``geometry.voxels_to_box``), and
a box exports as the voxels whose centres lie inside it (``geometry.box_to_voxels``), so import then export
gives the same numbers back. Imported rows become confirmed boxes (source ``csv``) unless told otherwise.

The mm exports carry each side's findings beside its box (``FINDING_COLUMNS``: gland seen / not_visualised /
absent, the lesion marker's centre in LPS mm and diameter, the comment, and their version, who and when); a
side with findings but no box is a row of its own. The original table has no place for them.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adrenal_site.spreadsheet import SafeDictWriter
from inference.ml.geometry import Box, box_to_voxels, voxels_to_box

from ..models import CropBox, Series, SideFinding
from .boxes import same_corners, save_box

ORIGINAL_COLUMNS = ["filename_nii", "adrenal_LR", "crop_x_min", "crop_x_max", "crop_y_min", "crop_y_max",
                    "crop_z_min", "crop_z_max"]
MM_COLUMNS = ["dataset", "patient", "study_uid", "series_id", "series_uid", "filename_nii", "side", "status",
              "reason", "source", "confidence", "note", "version", "x_min_mm", "y_min_mm", "z_min_mm", "x_max_mm",
              "y_max_mm", "z_max_mm", "i_min", "j_min", "k_min", "i_max", "j_max", "k_max", "updated_by", "updated_at"]
FINDING_COLUMNS = ["gland", "lesion_x_mm", "lesion_y_mm", "lesion_z_mm", "lesion_diameter_mm", "comment",
                   "findings_version", "findings_updated_by", "findings_updated_at"]
MM_COLUMNS = MM_COLUMNS + FINDING_COLUMNS
SIDES = {"r": "R", "right": "R", "l": "L", "left": "L"}


def _nii_names(series: Series) -> list[str]:
    names = []
    for inst in series.instances.all():
        name = Path(inst.path).name
        if name.endswith((".nii", ".nii.gz")):
            names.append(name)
    names.append(f"{series.series_uid}.nii.gz")
    return names


def filename_of(series: Series) -> str:
    """The ``filename_nii`` a series is exported under."""
    return _nii_names(series)[0]


def _strip(name: str) -> str:
    name = Path(name.strip()).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def grid_of(series: Series, name: str | None = None) -> tuple[np.ndarray, list[int]]:
    """``(affine voxel -> LPS mm, shape [k, j, i])`` that ``name``'s indices refer to: the imported NIfTI file's
    own grid when ``name`` is that file, else the stored volume's."""
    grid = (series.extra or {}).get("source_grid")
    if grid and name is not None and _strip(name) == _strip(grid["file"]):
        return np.asarray(grid["affine_lps"], float), list(reversed(grid["shape_ijk"]))
    return np.asarray(series.volume.affine, float), list(series.volume.shape)


def series_index(series_qs) -> dict[str, list[Series]]:
    """Names (without .nii/.nii.gz) -> series, for matching ``filename_nii``."""
    index: dict[str, list[Series]] = {}
    for s in series_qs.select_related("volume").prefetch_related("instances"):
        names = {_strip(n) for n in _nii_names(s)} | {s.series_uid}
        if hasattr(s, "volume") and s.volume.file:
            names.add(_strip(s.volume.file.name))
        for n in names:
            index.setdefault(n, []).append(s)
    return index


@dataclass
class ImportResult:
    imported: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"row": n, "filename_nii", "reason"}

    def to_dict(self) -> dict:
        return {"imported": self.imported, "failed": self.failed}


def _index(row: dict, column: str) -> int:
    """A voxel index from a crop-table cell: a whole number written as ``12`` or ``12.0``; ValueError naming the
    column for text, fractions (``5.9`` is not 5), ``nan``, ``inf`` and numbers too large for a volume."""
    raw = (row.get(column) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{column} must be a whole number, not {raw[:40]!r}") from None
    if not math.isfinite(value) or not value.is_integer() or abs(value) > 2**31:
        raise ValueError(f"{column} must be a whole number, not {raw[:40]!r}")
    return int(value)


def import_original(source: str | os.PathLike | io.TextIOBase, series_qs, *, status: str = CropBox.Status.CONFIRMED,
                    user=None) -> ImportResult:
    """Read an original crop table into boxes of the matching series; a bad row is reported, the rest go on. A row
    whose box is already stored as it says (same status, and the same corners or exactly the row's voxels) is
    reported ``unchanged`` and writes no new version, so importing a table again, or the table exported from the
    store, is idempotent."""
    result = ImportResult()
    handle = open(source, newline="", encoding="utf-8-sig") if isinstance(source, (str, os.PathLike)) else source
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ORIGINAL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"not an original crop table: missing column(s) {', '.join(missing)}")
        index = series_index(series_qs)
        for n, row in enumerate(reader, start=2):  # row 1 is the header
            name = (row.get("filename_nii") or "").strip()
            try:
                matches = index.get(_strip(name), [])
                if not matches:
                    raise ValueError(f"no scan matches filename_nii {name!r}")
                if len(matches) > 1:
                    raise ValueError(f"filename_nii {name!r} matches {len(matches)} scans")
                series = matches[0]
                side = SIDES.get((row.get("adrenal_LR") or "").strip().lower())
                if side is None:
                    raise ValueError(f"adrenal_LR must be R or L, not {row.get('adrenal_LR')!r}")
                lo, hi = [], []
                affine, shape = grid_of(series, name)
                size_ijk = list(reversed(shape))
                for axis, size in zip("xyz", size_ijk):
                    a, b = _index(row, f"crop_{axis}_min"), _index(row, f"crop_{axis}_max")
                    if not 0 <= a < b <= size:
                        raise ValueError(f"crop_{axis} {a}:{b} is empty or outside the volume (0:{size})")
                    lo.append(a)
                    hi.append(b - 1)  # exclusive max -> last voxel
                box = voxels_to_box(affine, lo, hi)
                current = CropBox.objects.filter(series=series, side=side).first()
                if current is not None and current.status == status and _as_the_row_says(current, box, affine,
                                                                                         shape, lo, hi):
                    # importing the same table again, or the table exported from these boxes, changes nothing: no
                    # new version, no image rebuild, the proposer's method and confidence kept
                    result.imported.append({"row": n, "filename_nii": name, "series_id": series.pk, "side": side,
                                            "version": current.version, "unchanged": True})
                    continue
                saved = save_box(series, side, box.lps_min, box.lps_max, status=status, source="csv", user=user)
                result.imported.append({"row": n, "filename_nii": name, "series_id": series.pk, "side": side,
                                        "version": saved.version, "unchanged": False})
            except (ValueError, KeyError) as exc:
                result.failed.append({"row": n, "filename_nii": name, "reason": str(exc)})
    return result


def _as_the_row_says(current: CropBox, box: Box, affine, shape, lo: list[int], hi: list[int]) -> bool:
    """Whether stored ``current`` already is the row's box: the same corners, or (a box not on voxel centres, as
    proposals are) exactly the row's voxels, as its export in this table would give them."""
    if same_corners(current, box):
        return True
    if not current.lps_min or not current.lps_max:
        return False
    have_lo, have_hi = box_to_voxels(affine, shape, Box(tuple(current.lps_min), tuple(current.lps_max)))
    return list(have_lo) == list(lo) and list(have_hi) == list(hi)


def _boxes(series_qs):
    return (CropBox.objects.filter(series__in=series_qs)
            .select_related("series__volume", "series__study__patient__dataset", "updated_by")
            .prefetch_related("series__instances").order_by("series_id", "side"))


def original_rows(series_qs) -> list[dict]:
    """Every box as a row of the original crop table (exclusive max; see the module docstring)."""
    rows = []
    for b in _boxes(series_qs):
        name = filename_of(b.series)
        affine, shape = grid_of(b.series, name)
        lo, hi = box_to_voxels(affine, shape, Box(tuple(b.lps_min), tuple(b.lps_max)))
        row = {"filename_nii": name, "adrenal_LR": b.side}
        for axis, a, z in zip("xyz", lo, hi):
            row[f"crop_{axis}_min"], row[f"crop_{axis}_max"] = a, max(a, z + 1)
        rows.append(row)
    return rows


def _findings(series_qs) -> dict[tuple[int, str], SideFinding]:
    return {(f.series_id, f.side): f for f in
            SideFinding.objects.filter(series__in=series_qs).select_related("updated_by")}


def finding_columns(f: SideFinding | None) -> dict:
    """A side's findings as ``FINDING_COLUMNS`` (empty strings when none were recorded)."""
    if f is None:
        return dict.fromkeys(FINDING_COLUMNS, "")
    centre = f.lesion_centre_lps or ["", "", ""]
    return {"gland": f.gland, **{f"lesion_{a}_mm": v for a, v in zip("xyz", centre)},
            "lesion_diameter_mm": "" if f.lesion_diameter_mm is None else f.lesion_diameter_mm,
            "comment": f.comment, "findings_version": f.version,
            "findings_updated_by": f.updated_by.username if f.updated_by else "",
            "findings_updated_at": f.updated_at.isoformat()}


def _series_columns(s: Series) -> dict:
    return {"dataset": s.study.patient.dataset.name, "patient": s.study.patient.pseudo_id,
            "study_uid": s.study.study_uid, "series_id": s.pk, "series_uid": s.series_uid,
            "filename_nii": filename_of(s)}


def mm_rows(series_qs) -> list[dict]:
    """Every box in LPS mm with its voxel range, status, source (the proposer's method), confidence and note, and
    its side's findings; sides with findings but no box; series marked "not covered" as a row without side."""
    rows = []
    findings = _findings(series_qs)
    for b in _boxes(series_qs):
        s = b.series
        rows.append({
            **_series_columns(s), "side": b.side,
            "status": b.status, "reason": "", "source": b.source,
            "confidence": "" if b.confidence is None else b.confidence, "note": b.note, "version": b.version,
            **{f"{a}_min_mm": v for a, v in zip("xyz", b.lps_min)}, **{f"{a}_max_mm": v for a, v in zip("xyz", b.lps_max)},
            **{f"{a}_min": v for a, v in zip("ijk", b.voxel_min)}, **{f"{a}_max": v for a, v in zip("ijk", b.voxel_max)},
            "updated_by": b.updated_by.username if b.updated_by else "", "updated_at": b.updated_at.isoformat(),
            **finding_columns(findings.pop((s.pk, b.side), None)),
        })
    if findings:
        by_id = {s.pk: s for s in series_qs.filter(pk__in={k[0] for k in findings})
                 .select_related("study__patient__dataset").prefetch_related("instances")}
        for (series_id, side), f in sorted(findings.items()):
            rows.append({c: "" for c in MM_COLUMNS} | _series_columns(by_id[series_id]) | {"side": side}
                        | finding_columns(f))
    for s in series_qs.filter(box_status=Series.BoxStatus.NOT_COVERED).select_related("study__patient__dataset") \
            .prefetch_related("instances"):
        rows.append({c: "" for c in MM_COLUMNS} | _series_columns(s) | {
            "status": s.box_status, "reason": s.box_status_reason})
    return rows


def mm_json(series_qs) -> dict:
    """``{"series": [{"id", "series_uid", "status", "reason", "boxes": {"R": {...}, "L": {...}}, "uncovered":
    {"L": what is missing}, "findings": {"R": {...}, ...}}]}`` in mm (sides without boxes or findings left out;
    a box's ``confidence`` and ``note`` are the proposer's)."""
    out = []
    findings = _findings(series_qs)
    for s in series_qs.order_by("id").prefetch_related("boxes"):
        out.append({"id": s.pk, "series_uid": s.series_uid, "status": s.box_status, "reason": s.box_status_reason,
                    "boxes": {b.side: {"lps_min": b.lps_min, "lps_max": b.lps_max, "voxel_min": b.voxel_min,
                                       "voxel_max": b.voxel_max, "status": b.status, "source": b.source,
                                       "confidence": b.confidence, "note": b.note,
                                       "version": b.version} for b in s.boxes.all()},
                    "uncovered": dict(s.uncovered_sides or {}),
                    "findings": {side: {"gland": f.gland, "lesion_centre_lps": f.lesion_centre_lps,
                                        "lesion_diameter_mm": f.lesion_diameter_mm, "comment": f.comment,
                                        "version": f.version}
                                 for (sid, side), f in sorted(findings.items()) if sid == s.pk}})
    return {"series": out}


def write_csv(rows: list[dict], columns: list[str], out, *, spreadsheet: bool = True) -> None:
    """Rows as CSV. ``spreadsheet`` (the mm table, read by people): text cells that a spreadsheet would take for a
    formula (a comment ``-ve``, a dataset ``=...``) are written as text (``adrenal_site.spreadsheet``); the original
    table is read back by code (``import_original``, the study's notebook) and is written verbatim."""
    kind = SafeDictWriter if spreadsheet else csv.DictWriter
    writer = kind(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
