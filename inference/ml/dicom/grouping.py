"""Grouping instances into series by SeriesInstanceUID (not by folder), with documented fallbacks.

- Series key: the SeriesInstanceUID; when it is blank, ``x-<hash>`` of the instance's folder (relative to the
  import root), FrameOfReferenceUID, orientation, matrix size and pixel spacing (``uid_source`` =
  ``folder+geometry``), so blank-UID series in different folders or geometries are never merged.
- Study key: the StudyInstanceUID; when blank, ``x-<hash>`` of PatientID, StudyDate and StudyTime
  (``study_uid_source`` = ``patient+date``), with the series folder's parent standing in for an empty PatientID.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

from .headers import InstanceHeader, content_hash
from .passes import split_passes
from .series_group import SeriesGroup

__all__ = ["SeriesGroup", "group_series"]


def _hash(*parts: object) -> str:
    return "x-" + hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _rounded(values, digits: int = 4):
    return None if values is None else tuple(round(v, digits) for v in values)


def _plane(orientation):
    """``orientation`` with each direction pointing along the positive patient axis it is nearest (as
    ``passes.plane_key``; unchanged for the usual 1\\0\\0\\0\\1\\0, so keys made before stay as they were)."""
    if orientation is None:
        return None
    out = []
    for v in (orientation[:3], orientation[3:6]):
        big = max(range(3), key=lambda n: abs(v[n]))
        out.extend(v if v[big] >= 0 else [-c for c in v])
    return tuple(out)


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return os.path.relpath(path, root)
        except ValueError:
            pass
    return str(path)


def _same_place(a: InstanceHeader, b: InstanceHeader) -> bool:
    """Two headers under one instance key describe the same image: same frames at the same positions."""
    pa, pb = [f.position for f in a.frames], [f.position for f in b.frames]
    if len(pa) != len(pb) or (a.rows, a.columns) != (b.rows, b.columns):
        return False
    return all(x == y or (x is not None and y is not None and max(abs(u - v) for u, v in zip(x, y)) < 1e-3)
               for x, y in zip(pa, pb))


def group_series(headers: list[InstanceHeader], root: str | os.PathLike | None = None, *,
                 split: bool = True) -> list[SeriesGroup]:
    """Group headers into series; an instance key seen twice in a series is kept once (first path wins) and the
    other copy listed in ``duplicates``. With ``split`` (the default) each series is then split into its passes
    and its odd instances set aside (``passes.split_passes``): every group returned is one pass."""
    root = Path(root) if root is not None else None
    groups: dict[str, SeriesGroup] = {}
    seen: dict[str, dict[str, InstanceHeader]] = defaultdict(dict)
    for h in headers:
        folder = _rel(h.path.parent, root)
        if h.series_uid:
            key, source = h.series_uid, "dicom"
        else:
            # the plane, not which way its rows run: an image stored the other way round is of the same series
            key = _hash(folder, h.frame_of_reference, _rounded(_plane(h.orientation)), h.rows, h.columns,
                        _rounded(h.pixel_spacing), h.modality)
            source = "folder+geometry"
        if h.study_uid:
            study_key, study_source = h.study_uid, "dicom"
        else:
            who = h.patient_id or _rel(h.path.parent.parent, root)
            study_key = _hash(who, h.meta.get("StudyDate", ""), h.meta.get("StudyTime", ""))
            study_source = "patient+date"
        group = groups.get(key)
        if group is None:
            group = groups[key] = SeriesGroup(key, source, study_key, study_source, folder)
        if h.key in seen[key]:
            kept = seen[key][h.key]
            if _same_place(h, kept):  # the same instance twice (a copy in another folder, a resend)
                group.duplicates.append((h, kept))
                continue
            # another image under the same UID (a broken anonymiser or a UID generator's collision): both are
            # kept, this one keyed by its content as an instance without a UID is, so no slice is lost
            old_key = h.key
            h.key, h.key_source = f"sha1:{content_hash(h.path)}", "content-hash"
            group.notes.append(f"{h.path.name} shares SOP Instance UID {old_key} with {kept.path.name} at another "
                               f"position: both kept, {h.path.name} keyed by its content")
            if h.key in seen[key]:
                group.duplicates.append((h, seen[key][h.key]))
                continue
        seen[key][h.key] = h
        group.instances.append(h)
    out = list(groups.values())
    if split:
        out = [p for g in out for p in split_passes(g)]
    return sorted(out, key=lambda g: (g.folder, g.key))
