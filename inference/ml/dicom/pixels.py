"""Decoding stored pixels to Hounsfield units (rescale slope/intercept per frame, or a modality LUT).

Every transfer syntax pydicom can decode with the installed plugins is read: uncompressed (little and big
endian, deflated), JPEG 2000, JPEG-LS, JPEG lossless and RLE (pylibjpeg, with GDCM as fallback).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_modality_lut

from ..limits import TooManyVoxels, check_voxels
from .headers import Frame, open_dicom

HU_MIN, HU_MAX = -32768, 32767
PADDING_HU = -1024  # pixel padding is stored as air, as voxels outside a resampled scan are


class DecodeError(Exception):
    """The pixel data could not be decoded (truncated, unsupported compression, ...)."""


def _guess_transfer_syntax(ds: pydicom.Dataset) -> None:
    """Files without file meta: the transfer syntax is the encoding the dataset was read with."""
    meta = ds.get("file_meta")
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    uid = "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid


def read_frames(path) -> tuple[pydicom.Dataset, np.ndarray]:
    """The full dataset and its stored pixel values as ``[frames, rows, columns]``."""
    ds, arr, _ = read_frames_padded(path)
    return ds, arr


def read_frames_padded(path) -> tuple[pydicom.Dataset, np.ndarray, np.ndarray | None]:
    """``read_frames`` and where its pixels are padding (``padding_mask``), or None."""
    try:
        ds = open_dicom(Path(path), force=True)
        _guess_transfer_syntax(ds)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DecodeError(f"not a greyscale image ({ds.SamplesPerPixel} samples per pixel)")
        try:  # Rows x Columns x frames from the header, before pixel data is decoded
            check_voxels((int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows", 0) or 0),
                          int(ds.get("Columns", 0) or 0)), f"{Path(str(path)).name} (frames x Rows x Columns)")
        except TooManyVoxels as exc:
            raise DecodeError(str(exc)) from None
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise DecodeError(f"no pixel data: the file ends at byte {Path(str(path)).stat().st_size:,} before its "
                              "image (truncated?)")
        check_compressed_sizes(ds)
        arr = ds.pixel_array
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure becomes a reason
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        low = msg.lower()
        if "less than expected" in low or ("length" in low and ("pixel data" in low or "expected" in low)):
            raise DecodeError(f"pixel data truncated: {msg}") from exc
        raise DecodeError(f"cannot decode pixel data ({type(exc).__name__}: {msg})") from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DecodeError(f"not a greyscale image (pixel array of shape {arr.shape})")
    return ds, arr, padding_mask(ds, arr)


J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
                "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                "1.2.840.10008.1.2.4.203")
JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                 "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
# JPEG start-of-frame markers (baseline to lossless, arithmetic; 0xF7 is JPEG-LS); 0xC4, 0xC8, 0xCC are not
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def compressed_size(data: bytes, syntax: str) -> tuple[int, int, int] | None:
    """``(columns, rows, components)`` a JPEG 2000, JPEG or JPEG-LS frame declares in its own header (the SIZ
    or SOF segment), which the decoder allocates for whatever the DICOM header says; None when not found."""
    if syntax in J2K_SYNTAXES:
        at = data.find(b"\xff\x4f\xff\x51")  # start of codestream, then SIZ
        if at < 0 or len(data) < at + 42:
            return None
        xsiz, ysiz, xo, yo = struct.unpack(">4I", data[at + 8:at + 24])
        return max(0, xsiz - xo), max(0, ysiz - yo), struct.unpack(">H", data[at + 40:at + 42])[0]
    if syntax in JPEG_SYNTAXES:
        pos = 2 if data[:2] == b"\xff\xd8" else -1
        while 0 <= pos < len(data) - 9:
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:
                pos += 1
                continue
            if marker in _SOF:
                rows, cols = struct.unpack(">2H", data[pos + 5:pos + 9])
                return cols, rows, data[pos + 9] if pos + 9 < len(data) else 1
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:
                pos += 2
                continue
            pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return None


def check_compressed_sizes(ds: pydicom.Dataset) -> None:
    """Refuse (``DecodeError``) compressed frames whose own header declares a larger image than Rows x Columns x
    SamplesPerPixel, before decoding: the decoders allocate what the codestream declares, so a 627-byte JPEG 2000
    codestream of 12000 x 12000 in a '64 x 64' file cost 1 GB (the format allows 4 billion pixels a side)."""
    syntax = str(getattr(ds.get("file_meta"), "TransferSyntaxUID", "") or "")
    if syntax not in J2K_SYNTAXES + JPEG_SYNTAXES or "PixelData" not in ds:
        return
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=n)
        for index, frame in enumerate(frames, 1):
            size = compressed_size(frame[:1 << 16], syntax)
            if size and size[0] * size[1] * max(size[2], 1) > cols * rows * samples:
                raise DecodeError(f"frame {index}: its compressed image declares {size[0]} x {size[1]} pixels "
                                  f"({size[2]} component(s)), the header {cols} x {rows} ({samples}); refused "
                                  "before decoding")
    except DecodeError:
        raise
    except Exception:  # noqa: BLE001 - a damaged encapsulation is the decoder's to name
        return


def _fits(value: int, ds: pydicom.Dataset) -> bool:
    """Whether ``value`` is a stored value of BitsStored bits (signed or not), as the decoder gives them."""
    bits = int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 16) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(1 << (bits - 1)) <= value < 1 << (bits - 1)
    return 0 <= value < 1 << bits


def padding_mask(ds: pydicom.Dataset, arr: np.ndarray) -> np.ndarray | None:
    """Where the decoded ``arr`` holds pixel padding (PixelPaddingValue, or the range up to
    PixelPaddingRangeLimit): the scanner's "no data here" outside the reconstructed circle; None when there is
    none. Its stored value is often far from air: unsigned 0xF830 rescaled to +62512 HU (a white band of
    'bone'), signed -2000 HU. A padding value in the bits above BitsStored (0xF830 with 12 bits stored) is
    looked for in the undecoded container values, as the decoder clears those bits and would make it collide
    with real data (0x830)."""
    values = [ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")]
    values = [int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not values or "PixelPaddingValue" not in ds:
        return None
    low, high = min(values), max(values)
    if all(_fits(v, ds) for v in (low, high)):
        source = arr
    elif ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return None  # a codec keeps BitsStored bits only: such a padding value cannot occur
    else:
        ds.pixel_array_options(correct_unused_bits=False)
        source = ds.pixel_array.reshape(arr.shape)
        if int(ds.get("PixelRepresentation", 0) or 0) == 0:
            source = source.astype(np.uint16 if source.itemsize <= 2 else np.uint32, copy=False)
    mask = (source >= low) & (source <= high)
    return mask if mask.any() else None


IMPLAUSIBLE_HU = 10_000  # above any tissue, contrast or bone; metal on an extended scale reaches ~30 000 in few voxels
IMPLAUSIBLE_FRACTION = 0.10


def implausible_hu(hu: np.ndarray) -> str | None:
    """Why a volume's values cannot be HU, or None: more than ``IMPLAUSIBLE_FRACTION`` of its voxels above
    ``IMPLAUSIBLE_HU`` (a signed series labelled unsigned puts all air and fat at the top of the range; a wrong
    rescale multiplies everything). Metal, even on an extended CT scale, fills a few voxels, not a tenth."""
    high = int(np.count_nonzero(hu > IMPLAUSIBLE_HU))
    if hu.size and high > IMPLAUSIBLE_FRACTION * hu.size:
        return (f"values are not HU: {high / hu.size:.0%} of the voxels decode above {IMPLAUSIBLE_HU} HU (max "
                f"{int(hu.max())}), which no CT holds")
    return None


def to_hu(ds: pydicom.Dataset, raw: np.ndarray, frame: Frame, padded: np.ndarray | None = None
          ) -> tuple[np.ndarray, int]:
    """One frame's stored values as int16 HU (rounded, clipped to the int16 range), and how many of its pixels
    were padding (``padded``, this frame's part of ``padding_mask``), stored as air (-1024 HU, what the store puts
    wherever the scan has no data)."""
    if "ModalityLUTSequence" in ds:
        values = np.asarray(apply_modality_lut(raw, ds), np.float32)
        hu = np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)
    elif frame.slope == 1.0 and float(frame.intercept).is_integer():
        hu = np.clip(raw.astype(np.int32) + int(frame.intercept), HU_MIN, HU_MAX).astype(np.int16)
    else:
        values = raw.astype(np.float32) * np.float32(frame.slope) + np.float32(frame.intercept)
        hu = np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)
    if padded is None or not padded.any():
        return hu, 0
    hu[padded] = PADDING_HU
    return hu, int(padded.sum())
