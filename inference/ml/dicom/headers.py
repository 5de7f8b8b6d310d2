"""One DICOM file's header, read without its pixel data, with the identifiers' documented fallbacks.

Instance key: the SOP Instance UID of the dataset, else the one in the file meta (anonymisers may blank
the dataset's copy only), else ``sha1:<hash of the file's bytes>``.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from ..limits import TooManyVoxels, check_voxels, max_voxels

# SOP classes that never hold a CT image series.
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
# Tags kept as series metadata (the ones the original study indexed), by keyword.
META_KEYWORDS = (
    "Modality", "ImageType", "BodyPartExamined", "SeriesDescription", "SeriesNumber", "SliceThickness",
    "SpacingBetweenSlices", "ConvolutionKernel", "KVP", "Exposure", "ContrastBolusAgent",
    "ContrastBolusStartTime", "ContrastBolusRoute", "Manufacturer", "ManufacturerModelName", "SeriesDate",
    "SeriesTime", "StudyDate", "StudyTime", "StudyDescription", "AcquisitionNumber",
    # what tells passes under one SeriesInstanceUID apart (``passes.py``)
    "TemporalPositionIdentifier", "ContrastBolusVolume",
)


class NotDicom(Exception):
    """The file is not a DICOM file (or not readable as one)."""


class BadHeader(ValueError):
    """A DICOM header whose values contradict each other or the file (a frame count the file cannot hold)."""


@dataclass
class Frame:
    """Where one image plane of an instance lies, and how its stored values become HU."""

    position: tuple[float, float, float] | None
    slope: float = 1.0
    intercept: float = 0.0


@dataclass
class InstanceHeader:
    path: Path
    key: str
    key_source: str  # "dicom", "file-meta" or "content-hash"
    sop_class: str
    series_uid: str
    study_uid: str
    patient_id: str
    frame_of_reference: str
    modality: str
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    instance_number: int | None
    transfer_syntax: str
    has_pixels: bool
    frames: list[Frame] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # What RescaleType (or the Modality LUT's type) says the rescaled values are; "" when absent (= HU for CT).
    value_units: str = ""

    @property
    def is_multiframe(self) -> bool:
        return len(self.frames) > 1


def finite_numbers(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite numbers from a multi-valued element, or None (absent, too few or many, or not numbers: NaN and
    infinity included, so a header with ``nan`` is refused as missing geometry, not a numpy error later)."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def instance_number(ds: pydicom.Dataset) -> int | None:
    """InstanceNumber as an integer, or None when absent or not a whole number (an IS of '1.5' or 'abc' is
    kept by pydicom as text with a warning)."""
    try:
        value = ds.get("InstanceNumber")
        if value in (None, ""):
            return None
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


MAX_TEXT = 1024  # characters of one header text kept (DICOM's longest short strings are 64; UIDs 64)
MAX_VALUES = 64  # values of one multi-valued header element kept


def _text(value) -> str:
    """An identifier's text without surrounding spaces or NUL bytes (PostgreSQL text cannot hold NUL), at most
    ``MAX_TEXT`` characters (every header of an import is held until its series are grouped)."""
    return str(value)[:MAX_TEXT * 2].replace("\x00", "").strip()[:MAX_TEXT]


def _plain(value) -> Any:
    """A JSON-friendly copy of a header value."""
    if value is None:
        return None
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        return [_plain(v) for v in list(value)[:MAX_VALUES]]
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS)):
        return float(value)
    return _text(value)


# A value longer than this (a vendor's private blob, a thumbnail, the pixel data) is not read with the header:
# pydicom reads it from the file when it is used. A file's header is otherwise read whole, so a 600 MB private
# element before the pixels cost 600 MB per file read (a clinician's upload may be 4 GiB).
DEFER_BYTES = 1024**2
# What reading a file's header may parse into memory (its elements and sequence items, values up to DEFER_BYTES
# included; deferred values are skipped, not read). pydicom makes an object of every element and item: 48 MB of
# empty sequence items cost 2.2 GB and 79 s. A CT slice's header is kilobytes, an enhanced CT's per-frame groups
# about 0.5 KB a frame (the voxel cap allows about 3000 frames of 256 x 256: 1.5 MB).
MAX_HEADER_BYTES = 4 * 1024**2


class HeaderTooLarge(BadHeader):
    """A DICOM file whose header holds more than ``MAX_HEADER_BYTES`` to parse."""


class _DicomFile(io.RawIOBase):
    """One DICOM file as pydicom reads it: one that starts at "DICM" (its writer left the 128-byte preamble out)
    is read as if the preamble were there, so pydicom finds the prefix and the file meta where the standard puts
    them; with ``budget``, reading more than that many bytes (values pydicom defers are skipped by seeking, not
    read) raises :class:`HeaderTooLarge`. pydicom reopens a deferred value's file as ``_DicomFile(path, "rb")``
    (no budget: the value is being used)."""

    PREAMBLE = 128

    def __init__(self, path: Path, mode: str = "rb", budget: int | None = None):
        super().__init__()
        self._fh = open(path, "rb")
        self._skip = self.PREAMBLE if self._fh.read(4) == b"DICM" else 0
        self._fh.seek(0)
        self._size = os.fstat(self._fh.fileno()).st_size + self._skip
        self._pos = 0
        self._budget, self._read = budget, 0
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        self._fh.seek(max(0, self._pos - self._skip))
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = 0
        if self._pos < self._skip:
            n = min(len(view), self._skip - self._pos)
            view[:n] = bytes(n)
            self._pos += n
            self._fh.seek(0)
        if n < len(view):
            got = self._fh.readinto(view[n:]) or 0
            self._pos += got
            n += got
        self._read += n
        if self._budget is not None and self._read > self._budget:
            raise self.over_budget()  # pydicom may re-raise it as another error: open_dicom checks over_budget
        return n

    def restart_count(self) -> None:
        self._read = 0

    def over_budget(self) -> HeaderTooLarge | None:
        """The refusal, once more than ``budget`` bytes were read; else None."""
        if self._budget is None or self._read <= self._budget:
            return None
        return HeaderTooLarge(
            f"the DICOM header holds more than {self._budget / 1024**2:g} MB of elements to read before its pixel "
            f"data (a file of {self._size - self._skip:,} bytes); refused before building them")

    def close(self) -> None:
        self._fh.close()
        super().close()


DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")


def _file_meta(fh) -> tuple[str, int]:
    """The transfer syntax named in a file's meta group (explicit VR little endian after "DICM" at byte 128) and
    where its data set starts; ``("", 0)`` when it has none."""
    fh.seek(128)
    if fh.read(4) != b"DICM":
        return "", 0
    syntax, pos = "", 132
    while True:
        head = fh.read(8)
        if len(head) < 8 or struct.unpack("<H", head[:2])[0] != 2:
            return syntax, pos
        if head[4:6] in _LONG_VRS:
            raw = fh.read(4)
            length = struct.unpack("<I", raw)[0] if len(raw) == 4 else 0
            pos += 12 + length
        else:
            length = struct.unpack("<H", head[6:8])[0]
            pos += 8 + length
        if length > 1 << 20:
            return syntax, pos
        value = fh.read(length)
        if struct.unpack("<H", head[2:4])[0] == 0x0010:
            syntax = value.rstrip(b"\0 ").decode("ascii", "replace")


def _check_inflated_size(fh) -> None:
    """A deflated data set (transfer syntax 1.2.840.10008.1.2.1.99) is inflated whole by pydicom before it is
    read, pixels included: refuse (:class:`HeaderTooLarge`) one that inflates beyond what the voxel cap allows
    (2 bytes a voxel plus ``MAX_HEADER_BYTES``), counted by inflating it in chunks first. An 892 KB file inflated
    to 1.8 GB."""
    syntax, start = _file_meta(fh)
    if syntax != DEFLATED:
        return
    cap = 2 * max_voxels() + MAX_HEADER_BYTES
    fh.seek(start)
    inflater, total = zlib.decompressobj(-15), 0
    while chunk := fh.read(1 << 20):
        while chunk:
            total += len(inflater.decompress(chunk, 1 << 24))
            if total > cap:
                raise HeaderTooLarge(f"the deflated data set inflates to more than {cap / 1024**2:.0f} MB (what "
                                     "the voxel cap, ADRENAL_MAX_VOXELS, allows); refused before inflating it")
            chunk = inflater.unconsumed_tail
        if inflater.eof:
            return


def open_dicom(path: Path, budget: int | None = None, **kwargs) -> pydicom.Dataset:
    """``pydicom.dcmread`` of a file with its preamble, or of one that starts at "DICM" without it (read as if
    it had one; before, such a file was 'not a DICOM file'). Other files as ``dcmread`` treats them. Values over
    ``DEFER_BYTES`` are read from the file when used (``defer_size``), not with the rest; reading more than
    ``budget`` bytes to parse it raises :class:`HeaderTooLarge` (the header scan passes ``MAX_HEADER_BYTES``;
    the pixel read, of files whose header passed it, none: compressed frames are read as they are parsed)."""
    kwargs.setdefault("defer_size", DEFER_BYTES)
    with _DicomFile(path, budget=budget) as fh:
        _check_inflated_size(fh)
        fh.seek(0)
        fh.restart_count()  # what the check read is not the header's
        try:
            ds = pydicom.dcmread(fh, **kwargs)
        except Exception:
            if refused := fh.over_budget():  # pydicom turns a reader's error inside a sequence into an OSError
                raise refused from None
            raise
        if refused := fh.over_budget():
            raise refused
        return ds


def _without_deferred(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The header without the values pydicom deferred (over ``DEFER_BYTES``): none is needed to describe the
    instance, and reading one (a 200 MB StudyDescription, which implicit VR allows) would load it whole and keep
    it in the header of every such file until the import groups its series."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)  # not read (ds.elements() and ds[tag] would read it)
        if getattr(elem, "value", 0) is None and getattr(elem, "length", 0) > 0:
            del ds[tag]
    return ds


def _read(path: Path) -> pydicom.Dataset:
    try:
        return _without_deferred(open_dicom(path, MAX_HEADER_BYTES, stop_before_pixels=True))
    except InvalidDicomError:
        pass
    except HeaderTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means an unusable file
        raise NotDicom(f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    # No preamble/file meta: accept only a raw dataset starting with a group 0002/0008 element (either byte
    # order) that parses and carries image-level tags; anything else is not parsed at all (big non-DICOM files).
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip's local header or an empty zip's end record
        raise NotDicom("a zip archive, not a DICOM file: unzip it and import the folder, or upload the zip (the "
                       "dataset's import page and the verdicts page take zips)")
    if head[:2] not in (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02"):
        raise NotDicom("not a DICOM file (no DICOM preamble and no image tags)")
    try:
        ds = _without_deferred(open_dicom(path, MAX_HEADER_BYTES, stop_before_pixels=True, force=True))
        tags_ok = any(k in ds for k in ("SOPClassUID", "Modality", "SeriesInstanceUID", "Rows"))
    except HeaderTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001
        raise NotDicom(f"not a DICOM file ({type(exc).__name__})") from exc
    if not tags_ok:
        raise NotDicom("not a DICOM file (no DICOM preamble and no image tags)")
    return ds


def _has_pixels(ds: pydicom.Dataset) -> bool:
    """Read with ``stop_before_pixels``, an image is known by its matrix size (the decoder reports a missing or
    broken PixelData later, with the reason)."""
    return bool(ds.get("Rows")) and bool(ds.get("Columns"))


def _fmt(values) -> str:
    return "missing" if values is None else "\\".join(f"{v:g}" for v in values)


def _frame_count(ds: pydicom.Dataset, file_size: int) -> int:
    """NumberOfFrames, checked before one frame is listed: the header's frames x Rows x Columns within the voxel
    cap (``limits.check_voxels``), no more frames than the file has bytes for (each frame takes at least a byte,
    an encapsulated one at least its 8-byte item header), and, for enhanced objects, one per-frame functional group
    per frame. A 2 KB edit of a header claimed 50 million frames and cost the worker 6 GB and minutes; now it is
    a BadHeader naming the numbers."""
    try:
        n = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        n = 1
    if n == 1:
        return 1
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    try:
        check_voxels((n, rows, cols), "NumberOfFrames x Rows x Columns")
    except TooManyVoxels as exc:
        raise BadHeader(str(exc)) from None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n:
        raise BadHeader(f"NumberOfFrames {n} but {len(per_frame)} per-frame functional group(s)")
    ts = str(getattr(ds.get("file_meta", None), "TransferSyntaxUID", "") or "")
    encapsulated = bool(ts) and pydicom.uid.UID(ts).is_encapsulated
    per_frame_bytes = 8 if encapsulated else max(1, rows * cols * int(ds.get("SamplesPerPixel", 1) or 1)
                                                 * int(ds.get("BitsAllocated", 16) or 16) // 8)
    if n * per_frame_bytes > file_size:
        raise BadHeader(f"NumberOfFrames {n} needs at least {n * per_frame_bytes:,} bytes of pixel data, "
                        f"the file has {file_size:,}")
    return n


def rescale_value(value, keyword: str, default: float) -> float:
    """RescaleSlope or RescaleIntercept as one finite number, ``default`` when absent or empty. BadHeader naming
    the element when it is no number, not finite, several different numbers (a converter's ``-1024\\0``; the same
    number repeated is that number), or a slope of 0: HU cannot be told from such stored values, and a slope read
    as 1 in place of 0, or a TypeError in place of the element's name, said nothing of it."""
    if value is None or value == "":
        return default
    values = list(value) if isinstance(value, (pydicom.multival.MultiValue, list, tuple)) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    shown = "\\".join(str(v) for v in values)[:64]
    if values and not numbers or not all(math.isfinite(v) for v in numbers):
        raise BadHeader(f"{keyword} {shown!r} is not a number: the stored values cannot be turned into HU")
    if not numbers:
        return default
    if len(set(numbers)) > 1:
        raise BadHeader(f"{keyword} holds {len(numbers)} different numbers ({shown}): the stored values cannot be "
                        "turned into HU")
    if keyword == "RescaleSlope" and numbers[0] == 0:
        raise BadHeader("RescaleSlope 0: every voxel would be the intercept; the stored values cannot be turned "
                        "into HU")
    return numbers[0]


def _frames(ds: pydicom.Dataset, file_size: int) -> tuple[list[Frame], tuple | None, tuple | None]:
    """Per-frame positions and rescale, with orientation and pixel spacing (classic or enhanced)."""
    n = _frame_count(ds, file_size)
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None or shared is not None:
        shared_item = shared[0] if shared else pydicom.Dataset()

        def pick(item, seq: str, kw: str):
            for src in (item, shared_item):
                if src is not None and seq in src and len(src[seq].value) and kw in src[seq].value[0]:
                    return src[seq].value[0][kw].value
            return None

        frames: list[Frame] = []
        orientation = spacing = None
        blocks: dict[str, set] = {"TemporalPositionIndex": set(), "StackID": set()}
        for f in range(n):
            item = per_frame[f] if per_frame is not None and f < len(per_frame) else None
            for kw, seen in blocks.items():
                if (value := pick(item, "FrameContentSequence", kw)) not in (None, ""):
                    seen.add(str(value))
            pos = finite_numbers(pick(item, "PlanePositionSequence", "ImagePositionPatient"), 3)
            slope = pick(item, "PixelValueTransformationSequence", "RescaleSlope")
            intercept = pick(item, "PixelValueTransformationSequence", "RescaleIntercept")
            frame_orientation = finite_numbers(pick(item, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
            frame_spacing = finite_numbers(pick(item, "PixelMeasuresSequence", "PixelSpacing"), 2)
            if f == 0:
                orientation, spacing = frame_orientation, frame_spacing
            else:  # one stack: a frame of another plane or pixel size would be stacked as if it were not
                for name, first, this in (("ImageOrientationPatient", orientation, frame_orientation),
                                          ("PixelSpacing", spacing, frame_spacing)):
                    if first is not None and (this is None or max(abs(a - b) for a, b in zip(first, this)) > 1e-3):
                        raise BadHeader(f"frame {f + 1} of {n} has another {name} ({_fmt(this)}) than frame 1 "
                                        f"({_fmt(first)}): frames of one multi-frame image are read as one stack")
            frames.append(Frame(pos, rescale_value(slope if slope is not None else ds.get("RescaleSlope"),
                                                   "RescaleSlope", 1.0),
                                rescale_value(intercept if intercept is not None else ds.get("RescaleIntercept"),
                                              "RescaleIntercept", 0.0)))
        for kw, seen in blocks.items():  # phases or stacks of one file would be stacked as one volume, alternating
            if len(seen) > 1:
                shown = ", ".join(sorted(seen, key=lambda v: (len(v), v))[:6])
                raise BadHeader(f"the {n} frames of this multi-frame image belong to {len(seen)} {kw} values "
                                f"({shown}): several {'phases' if kw.startswith('Temporal') else 'stacks'} in one "
                                "file, which would be read as one volume; export each as its own series")
        return frames, orientation, spacing
    pos = finite_numbers(ds.get("ImagePositionPatient"), 3)
    slope = rescale_value(ds.get("RescaleSlope"), "RescaleSlope", 1.0)
    intercept = rescale_value(ds.get("RescaleIntercept"), "RescaleIntercept", 0.0)
    frames = [Frame(pos if f == 0 else None, slope, intercept) for f in range(n)]
    return frames, finite_numbers(ds.get("ImageOrientationPatient"), 6), finite_numbers(ds.get("PixelSpacing"), 2)


def _value_units(ds: pydicom.Dataset) -> str:
    """RescaleType of the image (top level, or an enhanced object's Pixel Value Transformation functional group),
    else the Modality LUT's ModalityLUTType: what the rescaled values are. CT values are HU unless it says
    otherwise: dcmtk's lossy JPEG compression rescales a CT's values into the 8- or 12-bit range and writes
    RescaleType US (unspecified) with intercept 0."""
    def units(item) -> str:
        return str(item.get("RescaleType", "") or "").strip().upper() if item is not None else ""

    found = units(ds)
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(seq)
        if not found and groups:
            transform = groups[0].get("PixelValueTransformationSequence")
            found = units(transform[0]) if transform else ""
    if not found and ds.get("ModalityLUTSequence"):
        found = str(ds.ModalityLUTSequence[0].get("ModalityLUTType", "") or "").strip().upper()
    return found


def content_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_image_header_complete(ds: pydicom.Dataset, sop_class: str, path: Path) -> None:
    """Raise BadHeader when an image object's header stops before its matrix size: pydicom ends quietly where a
    file is cut, and such a file was grouped as a series of its own, skipped as 'non-CT modality (none)' or
    'no pixel data', which names the wrong problem. Image storage classes all require Rows and Columns."""
    name = pydicom.uid.UID(sop_class).name if sop_class else ""
    if "Image Storage" not in name or _has_pixels(ds):
        return
    tag = max(ds.keys())  # its raw element: a value cut in two may not even parse
    last = pydicom.datadict.keyword_for_tag(tag) or str(pydicom.tag.Tag(tag))
    raise BadHeader(f"{name} without Rows and Columns: the header stops after {last} "
                    f"at byte {path.stat().st_size:,} (truncated?)")


def read_header(path: str | os.PathLike) -> InstanceHeader:
    """The header of one file; raises NotDicom for files that are not DICOM, BadHeader for a header the file
    contradicts (a frame count it cannot hold)."""
    path = Path(path)
    ds = _read(path)
    if len(ds) == 0:  # pydicom stops quietly at the end of a file cut short
        raise BadHeader(f"no data set after the file meta: the file ends at byte {path.stat().st_size:,} "
                        "(truncated?)")
    meta_uid = str(getattr(ds.get("file_meta", None) or pydicom.Dataset(), "MediaStorageSOPInstanceUID", "") or "")
    sop_uid = _text(ds.get("SOPInstanceUID", "") or "")
    if sop_uid:
        key, key_source = sop_uid, "dicom"
    elif meta_uid.strip():
        key, key_source = meta_uid.strip(), "file-meta"
    else:
        key, key_source = f"sha1:{content_hash(path)}", "content-hash"
    sop_class = _text(ds.get("SOPClassUID", "") or "")
    if not sop_class and ds.get("file_meta") is not None:
        sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "").strip()
    _check_image_header_complete(ds, sop_class, path)
    frames, orientation, spacing = _frames(ds, path.stat().st_size)
    ts = ""
    if ds.get("file_meta") is not None:
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    meta = {}
    for kw in META_KEYWORDS:
        try:
            value = ds.get(kw)
        except Exception:  # noqa: BLE001 - a malformed optional tag is left out
            value = None
        if value not in (None, ""):
            meta[kw] = _plain(value)
    if ds.get("SharedFunctionalGroupsSequence") is not None and "SliceThickness" not in meta:
        try:
            meta["SliceThickness"] = float(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness)
        except Exception:  # noqa: BLE001
            pass
    image_type = ds.get("ImageType") or ()
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    return InstanceHeader(
        path=path,
        key=key,
        key_source=key_source,
        sop_class=sop_class,
        series_uid=_text(ds.get("SeriesInstanceUID", "") or ""),
        study_uid=_text(ds.get("StudyInstanceUID", "") or ""),
        patient_id=_text(ds.get("PatientID", "") or ""),
        frame_of_reference=_text(ds.get("FrameOfReferenceUID", "") or ""),
        modality=str(ds.get("Modality", "") or "").strip().upper(),
        image_type=tuple(_text(t).upper() for t in list(image_type)[:MAX_VALUES]),
        orientation=orientation,
        pixel_spacing=spacing,
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        instance_number=instance_number(ds),
        transfer_syntax=ts,
        has_pixels=_has_pixels(ds),
        frames=frames,
        meta=meta,
        value_units=_value_units(ds),
    )
