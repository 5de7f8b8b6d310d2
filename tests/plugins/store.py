"""Fixtures of the study-store area: small CT series written with pydicom (any geometry, transfer syntax,
UIDs blank or not), a cohort in the original study's ``{normal,abnormal}/<patient>/DICOM/...`` layout, and where
the shared real-world cases are (``CASES``, ``shared_cases()``: copies in ``tests/data/cases``)."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

from inference.ml.volume import Volume

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "data" / "cases"


def shared_cases() -> Path:
    """The shared real-world cases, copied whole into ``tests/data/cases`` so a clean clone has them."""
    if not (CASES / "nifti_axis_order" / "normal" / "NII_ZFIRST" / "NII_ZFIRST.nii.gz").is_file():
        pytest.fail(f"{CASES} is incomplete: the shared real-world cases are part of the repository")
    return CASES


def body_hu(volume: Volume) -> list[int]:
    """Median HU of the body (above -500 HU, below the bright rod) on every slice."""
    return [int(np.median(s[(s > -500) & (s < 1000)])) for s in volume.array]


def phantom(zs, body: int, rows: int = 12, cols: int = 12) -> np.ndarray:
    """Stored values (HU + 1024): air around a body of ``body`` HU; pixel [2, 2] holds 10 x z HU (z in mm)."""
    hu = np.full((len(zs), rows, cols), -1000, np.int32)
    hu[:, 3:-3, 3:-3] = body
    hu[:, 2, 2] = np.rint(10 * np.asarray(zs, float)).astype(int)
    return (hu + 1024).astype(np.uint16)


def ct_values(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Stored values (HU + 1024) with structure: a gradient, a bright block and noise, ``[k, j, i]``."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    hu = -1000 + 40 * k + 3 * j + 2 * i + rng.integers(-20, 20, shape)
    hu[:, shape[1] // 4: shape[1] // 2, shape[2] // 4: shape[2] // 2] += 1200
    return (hu + 1024).astype(np.uint16)


def write_ct_series(folder: Path, *, n: int = 6, rows: int = 16, cols: int = 16, z0: float = -100.0,
                    step: float = 2.5, z_positions: Sequence[float] | None = None, pixel_spacing=(0.8, 0.7),
                    orientation=AXIAL, tilt_mm_per_slice: float = 0.0, series_uid: str | None = "auto",
                    study_uid: str | None = "auto", patient_id: str = "PID-1", sop_uids_blank: bool = False,
                    image_type=("ORIGINAL", "PRIMARY", "AXIAL"), description: str = "Abdomen 2.5mm",
                    thickness: float | None = None, kernel: str = "B30f", modality: str = "CT",
                    transfer_syntax: str = ExplicitVRLittleEndian, values: np.ndarray | None = None,
                    slope: float = 1.0, intercept: float = -1024.0, signed: bool = False, seed: int = 0,
                    series_number: int = 2, shuffle_names: bool = True, frame_of_reference: str | None = None,
                    positions: Sequence[Sequence[float]] | None = None, tags: dict | None = None,
                    name_prefix: str = "IM") -> tuple[Path, np.ndarray]:
    """Write one series (one file per slice); returns the folder and the expected HU ``[k, j, i]`` in sorted
    position order (ordered by ``z_positions``; with explicit ``positions`` give them in ascending order).
    ``tags``: extra attributes by keyword on every file (e.g. ``AcquisitionNumber``); ``name_prefix`` lets
    several passes share one folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if values is not None and z_positions is None:
        n = len(values)
    zs = list(z_positions) if z_positions is not None else [z0 + step * k for k in range(n)]
    n = len(zs)
    stored = values if values is not None else ct_values((n, rows, cols), seed)
    if signed:
        stored = (stored.astype(np.int32) - 1024).astype(np.int16)
    series_uid = generate_uid() if series_uid == "auto" else (series_uid or "")
    study_uid = generate_uid() if study_uid == "auto" else (study_uid or "")
    for_uid = frame_of_reference or generate_uid()
    o = np.asarray(orientation, float)
    normal = np.cross(o[:3], o[3:])
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n) if shuffle_names else np.arange(n)
    for k, z in enumerate(zs):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = "" if sop_uids_blank else sop
        ds.Modality = modality
        ds.ImageType = list(image_type)
        ds.PatientID = patient_id
        ds.PatientName = f"Name^{patient_id}"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.StudyDate, ds.StudyTime = "20240102", "101500"
        ds.SeriesDate, ds.SeriesTime = "20240102", f"1016{series_number:02d}"
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(order[k]) + 1  # deliberately unrelated to position
        ds.SliceThickness = thickness if thickness is not None else step
        ds.ConvolutionKernel = kernel
        ds.KVP, ds.Exposure = 120, 200
        ds.Manufacturer, ds.ManufacturerModelName = "ACME", "Scanner 1"
        ds.BodyPartExamined = "ABDOMEN"
        position = np.array([-50.0, -60.0, 0.0]) + normal * z + np.array([0.0, tilt_mm_per_slice * k, 0.0])
        if positions is not None:  # explicit ImagePositionPatient per slice (e.g. a tilted gantry stepping in z)
            position = np.asarray(positions[k], float)
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = list(orientation)
        ds.PixelSpacing = list(pixel_spacing)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, (intercept + 1024 if signed else intercept)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        if transfer_syntax == RLELossless:
            ds.compress(RLELossless)
        elif transfer_syntax != ExplicitVRLittleEndian:
            raise ValueError(transfer_syntax)
        ds.save_as(folder / f"{name_prefix}{int(order[k]):04d}.dcm", enforce_file_format=True)
    base = stored.astype(np.float64) if not signed else stored.astype(np.float64) + 1024
    hu = np.rint(base * slope + intercept).astype(np.int16)
    sort = np.argsort(zs)
    return folder, hu[sort]


def make_store_cohort(root: Path, patients: int = 4, abnormal_every: int = 2, size: int = 16,
                      slices: int = 8) -> dict:
    """``{normal,abnormal}/<patient>/DICOM/<study>/<series>/``: per study a localizer, a thin (2 mm) and a
    thick (5 mm) axial series, and a non-DICOM note; plus ground_truth.csv. Returns what was written."""
    truth = {}
    for p in range(patients):
        label = "abnormal" if p % abnormal_every == 1 else "normal"
        pid = f"HOSP{p:03d}"
        folder = f"case{p:02d}"
        truth[folder] = {"patient_id": pid, "label": label}
        base = root / label / folder / "DICOM" / "ST1"
        study = generate_uid()
        write_ct_series(base / "SE1", n=1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), description="Topogram",
                        study_uid=study, patient_id=pid, rows=size, cols=size, seed=p, series_number=1,
                        orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
        write_ct_series(base / "SE2", n=slices, step=2.0, study_uid=study, patient_id=pid, rows=size, cols=size,
                        seed=p, series_number=2, description="Abdomen 2mm")
        write_ct_series(base / "SE3", n=max(3, slices * 2 // 5), step=5.0, study_uid=study, patient_id=pid,
                        rows=size, cols=size, seed=p + 50, series_number=3, description="Abdomen 5mm")
        (base / "NOTES.txt").write_text("exported by PACS\n")
    with open(root / "ground_truth.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "label"])
        for folder, t in truth.items():
            w.writerow([t["patient_id"], t["label"]])
    return truth


@pytest.fixture
def store_cohort(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "cohort"
    return root, make_store_cohort(root)
