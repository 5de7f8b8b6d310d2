"""ground_truth.csv: one row per series (patient, UIDs, label, per-side gland boxes, lesions), and its reader."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from inference.ml.atomic import atomic_path
from inference.ml.geometry import Box

from .scan import LesionTruth

MAX_LESIONS = 2
BASE_COLUMNS = ["patient", "label", "study_uid", "series_uid", "series_number", "kind", "series_path", "phase",
                "coverage", "pixel_spacing_mm", "slice_spacing_mm", "slices", "rescale", "base"]
BOX = ["x_min", "y_min", "z_min", "x_max", "y_max", "z_max"]
GLAND_COLUMNS = [f"{s}_gland_{b}" for s in ("R", "L") for b in BOX]
LESION_FIELDS = ["side", "type", "x", "y", "z", "d1_mm", "d2_mm", "d3_mm", "mean_hu"] + [f"box_{b}" for b in BOX]
LESION_COLUMNS = [f"lesion{n}_{f}" for n in range(1, MAX_LESIONS + 1) for f in LESION_FIELDS]
COLUMNS = BASE_COLUMNS + GLAND_COLUMNS + LESION_COLUMNS


@dataclass
class TruthRow:
    """One series of ground_truth.csv. ``glands[side]`` is the box (LPS mm) of that adrenal gland with its
    lesions, None when the series does not show it; ``kind`` is 'axial', 'thick' or 'localizer'."""

    patient: str
    label: str
    study_uid: str
    series_uid: str
    series_number: int
    kind: str
    series_path: str
    glands: dict[str, Box | None]
    lesions: list[LesionTruth] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def _box_cells(box: Box | None) -> list[str]:
    return [""] * 6 if box is None else [_fmt(v) for v in (*box.lps_min, *box.lps_max)]


def row_to_csv(r: TruthRow) -> dict[str, str]:
    out = {c: "" for c in COLUMNS}
    out.update({"patient": r.patient, "label": r.label, "study_uid": r.study_uid, "series_uid": r.series_uid,
                "series_number": str(r.series_number), "kind": r.kind, "series_path": r.series_path})
    out.update({k: v for k, v in r.extra.items() if k in out})
    for s in ("R", "L"):
        for b, v in zip(BOX, _box_cells(r.glands.get(s))):
            out[f"{s}_gland_{b}"] = v
    for n, les in enumerate(r.lesions[:MAX_LESIONS], start=1):
        vals = [les.side, les.type, *map(_fmt, les.centre), *map(_fmt, les.diameters_mm), _fmt(les.mean_hu),
                *_box_cells(les.box)]
        out.update({f"lesion{n}_{f}": v for f, v in zip(LESION_FIELDS, vals)})
    return out


def write_ground_truth(rows: list[TruthRow], path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(row_to_csv(r))
    return path


def _box(rec: dict[str, str], prefix: str) -> Box | None:
    cells = [rec.get(prefix + b, "") for b in BOX]
    if any(c == "" for c in cells):
        return None
    v = [float(c) for c in cells]
    return Box(tuple(v[:3]), tuple(v[3:]))


def read_ground_truth(csv_path: str | os.PathLike) -> list[TruthRow]:
    """Rows of a ground_truth.csv with gland and lesion boxes as ``Box`` objects (LPS mm)."""
    path = Path(csv_path)
    rows: list[TruthRow] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("patient", "label", "series_uid") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a ground-truth CSV (missing columns {missing})")
        for n, rec in enumerate(reader, start=2):
            try:
                lesions = []
                for i in range(1, MAX_LESIONS + 1):
                    p = f"lesion{i}_"
                    if not rec.get(p + "side"):
                        continue
                    lesions.append(LesionTruth(
                        rec[p + "side"], rec[p + "type"], tuple(float(rec[p + c]) for c in "xyz"),
                        tuple(float(rec[p + f"d{k}_mm"]) for k in (1, 2, 3)), float(rec[p + "mean_hu"]),
                        _box(rec, p + "box_")))
                rows.append(TruthRow(
                    patient=rec["patient"], label=rec["label"], study_uid=rec.get("study_uid", ""),
                    series_uid=rec["series_uid"], series_number=int(rec.get("series_number") or 0),
                    kind=rec.get("kind", "axial"), series_path=rec.get("series_path", ""),
                    glands={s: _box(rec, f"{s}_gland_") for s in ("R", "L")}, lesions=lesions,
                    extra={k: rec.get(k, "") for k in BASE_COLUMNS[7:]}))
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}, line {n}: bad ground-truth row ({exc})") from exc
    return rows
