"""Decoding stored pixels to Hounsfield units (rescale slope/intercept per frame, or a modality LUT).

Every transfer syntax pydicom can decode with the installed plugins is read: uncompressed (little and big
endian, deflated), JPEG 2000, JPEG-LS, JPEG lossless and RLE (pylibjpeg, with GDCM as fallback).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from ..limits import TooManyVoxels, check_voxels
from .headers import Frame

HU_MIN, HU_MAX = -32768, 32767


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
    try:
        ds = pydicom.dcmread(path, force=True)
        _guess_transfer_syntax(ds)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise DecodeError(f"not a greyscale image ({ds.SamplesPerPixel} samples per pixel)")
        try:  # Rows x Columns x frames from the header, before pixel data is decoded
            check_voxels((int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows", 0) or 0),
                          int(ds.get("Columns", 0) or 0)), f"{Path(str(path)).name} (frames x Rows x Columns)")
        except TooManyVoxels as exc:
            raise DecodeError(str(exc)) from None
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
    return ds, arr


def to_hu(ds: pydicom.Dataset, raw: np.ndarray, frame: Frame) -> np.ndarray:
    """One frame's stored values as int16 HU (rounded, clipped to the int16 range)."""
    if "ModalityLUTSequence" in ds:
        values = np.asarray(apply_modality_lut(raw, ds), np.float32)
        return np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)
    slope, intercept = frame.slope, frame.intercept
    if slope == 1.0 and float(intercept).is_integer():
        values = raw.astype(np.int32) + int(intercept)
        return np.clip(values, HU_MIN, HU_MAX).astype(np.int16)
    values = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)
