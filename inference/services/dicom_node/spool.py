"""The node's spool (``ADRENAL_DICOM_SPOOL``): received instances under ``incoming/<delivery>/<series>/``,
written atomically (``inference.ml.atomic``) before they are acknowledged, and one header per source series
(an instance without its pixel data) under ``headers/<study>/<series>.dcm``, kept after the import so results
carry the patient's identity back to the PACS."""
from __future__ import annotations

import hashlib
import re
import shutil
from io import BytesIO
from pathlib import Path

import pydicom
from django.conf import settings
from pydicom.dataset import Dataset

from inference.ml.atomic import atomic_path, write_bytes
from inference.ml.reporting import SourceImage, SourceSeries

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def root() -> Path:
    return Path(settings.ADRENAL_DICOM_SPOOL)


def safe_name(uid: str) -> str:
    """A UID as a file name; anything that is not a well-formed UID is hashed (never a path)."""
    uid = str(uid or "").strip()
    if UID_RE.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha1(uid.encode()).hexdigest()


def instance_path(folder: str, series_uid: str, sop_uid: str) -> str:
    """Relative (to the spool) path of a received instance."""
    return f"{folder}/{safe_name(series_uid)}/{safe_name(sop_uid)}.dcm"


def write_instance(relative: str, data: bytes | Path) -> int:
    """Write a received instance (a whole DICOM file: bytes, or a file to copy) atomically; returns its size."""
    if isinstance(data, Path):
        with atomic_path(root() / relative) as tmp:
            shutil.copyfile(data, tmp)
        return (root() / relative).stat().st_size
    write_bytes(root() / relative, data)
    return len(data)


def header_path(study_uid: str, series_uid: str) -> Path:
    return root() / "headers" / safe_name(study_uid) / f"{safe_name(series_uid)}.dcm"


def save_header(instance_file: Path) -> Path:
    """Keep ``instance_file``'s header (no pixel data) as its series' header; returns where."""
    ds = pydicom.dcmread(instance_file, stop_before_pixels=True)
    target = header_path(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return target


def discard_header(study_uid: str, series_uid: str) -> None:
    """Remove a series' kept header (its patient's identity) and its study's folder once empty: the series was
    deleted from the store (``inference.signals.remove_header``)."""
    path = header_path(study_uid, series_uid)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # another series of the study still has its header (or it was never there)
        pass


def load_header(study_uid: str, series_uid: str) -> Dataset | None:
    path = header_path(study_uid, series_uid)
    return pydicom.dcmread(path, stop_before_pixels=True) if path.exists() else None


def source_series(header: Dataset, instances) -> SourceSeries:
    """A SourceSeries from a header and rows with ``sop_class_uid``, ``sop_instance_uid`` and ``position``."""
    images = tuple(SourceImage(i.sop_class_uid, i.sop_instance_uid,
                               tuple(float(v) for v in i.position) if i.position else None) for i in instances)
    return SourceSeries(header, images)
