"""Write a synthetic scan as CT Image Storage DICOM files (explicit VR little endian) with pydicom."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from inference.ml.volume import Volume

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"


def uid(*parts: object) -> str:
    """A valid UID derived deterministically from ``parts``."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def hexname(*parts: object, n: int = 8) -> str:
    return hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()[:n].upper()


@dataclass
class SeriesInfo:
    patient_name: str
    patient_id: str
    study_uid: str
    series_uid: str
    frame_uid: str
    series_number: int
    description: str
    study_date: str
    body_part: str
    phase: str
    kvp: int
    kernel: str
    sex: str
    birth_date: str
    signed: bool  # True: int16 pixels, intercept 0; False: uint16 pixels, intercept -1024
    instance_order: str  # 'head_first' (instance 1 at the top) or 'feet_first'
    slice_thickness: float | None = None


def _base(info: SeriesInfo, sop_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = info.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = info.patient_id[-8:]
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.ManufacturerModelName = "adrenal-ct phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT ABDOMEN"
    ds.SeriesDescription = info.description
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.birth_date
    ds.PatientSex = info.sex
    ds.BodyPartExamined = info.body_part
    ds.KVP = info.kvp
    ds.ConvolutionKernel = info.kernel
    ds.PatientPosition = "HFS"
    if info.phase != "non_contrast":
        ds.ContrastBolusAgent = "IODINATED"
        ds.ContrastBolusRoute = "IV"
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = info.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = info.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if info.signed else 0
    ds.RescaleIntercept = 0 if info.signed else -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def _pixels(hu: np.ndarray, signed: bool) -> bytes:
    if signed:
        return np.ascontiguousarray(hu, dtype="<i2").tobytes()
    return np.ascontiguousarray(np.clip(hu.astype(np.int32) + 1024, 0, 65535), dtype="<u2").tobytes()


def write_axial_series(volume: Volume, folder: Path, info: SeriesInfo, file_names: list[str]) -> list[Path]:
    """One file per slice of an axial volume (affine diagonal in-plane, k along +z or -z).
    ``file_names[k]`` names the file of slice k (the caller decides how unrelated to InstanceNumber)."""
    folder.mkdir(parents=True, exist_ok=True)
    a = np.asarray(volume.affine, float)
    nk, nj, ni = volume.shape
    row_dir = a[:3, 0] / np.linalg.norm(a[:3, 0])
    col_dir = a[:3, 1] / np.linalg.norm(a[:3, 1])
    sp = [float(np.linalg.norm(a[:3, 1])), float(np.linalg.norm(a[:3, 0]))]
    step = float(np.linalg.norm(a[:3, 2]))
    paths = []
    for k in range(nk):
        pos = a[:3, 3] + k * a[:3, 2]
        inst = (nk - k) if info.instance_order == "head_first" else k + 1
        sop = uid(info.series_uid, k)
        ds = _base(info, sop)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = inst
        ds.ImagePositionPatient = [round(float(v), 4) for v in pos]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row_dir, *col_dir)]
        ds.SliceLocation = round(float(pos[2]), 4)
        ds.PixelSpacing = [round(sp[0], 6), round(sp[1], 6)]
        ds.SliceThickness = round(info.slice_thickness or step, 4)
        ds.SpacingBetweenSlices = round(step, 4)
        ds.Rows, ds.Columns = nj, ni
        ds.PixelData = _pixels(volume.array[k], info.signed)
        path = folder / file_names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_localizer(volume: Volume, folder: Path, info: SeriesInfo) -> list[Path]:
    """A 2-instance coronal LOCALIZER series: a projection of the volume along y on a square-pixel grid."""
    folder.mkdir(parents=True, exist_ok=True)
    a = np.asarray(volume.affine, float)
    arr = volume.array.astype(np.float32)
    proj = arr.mean(axis=1)  # [k, i]
    sx, sz = float(np.linalg.norm(a[:3, 0])), float(np.linalg.norm(a[:3, 2]))
    pix = 2.0
    ni = max(1, int(arr.shape[2] * sx / pix))
    nk = max(1, int(arr.shape[0] * sz / pix))
    ii = np.clip((np.arange(ni) * pix / sx).astype(int), 0, arr.shape[2] - 1)
    kk = np.clip((arr.shape[0] - 1 - np.arange(nk) * pix / sz).astype(int), 0, arr.shape[0] - 1)
    img = np.rint(proj[np.ix_(kk, ii)] * 2 + 600).clip(-1024, 3000).astype(np.int16)  # top row = superior
    top = a[:3, 3] + (arr.shape[0] - 1) * a[:3, 2]
    paths = []
    for n in range(2):
        ds = _base(info, uid(info.series_uid, "loc", n))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [round(float(top[0]), 4), round(float(a[1, 3] + n * 10), 4), round(float(top[2]), 4)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.PixelSpacing = [pix, pix]
        ds.SliceThickness = 1
        ds.Rows, ds.Columns = img.shape
        ds.PixelData = _pixels(img, info.signed)
        path = folder / f"{hexname(info.series_uid, n)}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
