"""Per-gland 2.5D images of generated patients with their exact lesion pixels, for dense pretraining.

:func:`dense_patient` renders one patient (``synthetic.make_patient``, or a real TotalSegmentator CT with
inserted lesions: ``base`` ``real`` the example CT, ``dicom`` the example DICOM series' patient), proposes its boxes with the app's proposer (as a lead's run would get them),
builds each gland's images with ``inference.ml.images25d`` and the lesion mask resampled on the same grid (a
mask volume of -200/400 HU through the same code, so the pixels line up exactly). :func:`dense_cohort` does it
for many seeds over a process pool.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.ml.images25d import build_scan_images
from inference.ml.proposals import propose
from inference.ml.volume import Volume

from .real_base import make_dicom_patient, make_real_patient
from .scan import make_patient

COVERAGES = ("abdomen", "upper_abdomen", "cap")


@dataclass
class DenseSide:
    images: np.ndarray      # [n, 3, H, W] float16 in [0, 1]
    mask: np.ndarray        # [n, H, W] bool: lesion pixels of the centre slice
    z_mm: np.ndarray        # [n] image centres (LPS z, mm)
    abnormal: int           # 1 when this gland holds a lesion


@dataclass
class DensePatient:
    seed: int
    label: int
    real: bool              # the example CT (the benchmarks' real anatomy)
    base: str = "synthetic"  # synthetic, real or dicom
    sides: dict[str, DenseSide] = field(default_factory=dict)


BASES = ("synthetic", "real", "dicom")


def dense_patient(seed: int, abnormal: bool, image_cfg: dict, *, base: str = "synthetic",
                  fixtures_dir: str | Path | None = None, lesion: dict | None = None) -> DensePatient | None:
    """One patient's per-gland images and lesion masks, or None when the proposer turns the scan away or an
    abnormal patient's lesion fell outside the scan. ``image_cfg``: a run's ``image`` configuration (``layout``
    ``side``); ``base`` one of :data:`BASES` (``synthetic.real_base``); ``lesion`` optionally fixes the lesion
    (as ``make_patient``). Raises ValueError for another base."""
    if base == "real":
        scan = make_real_patient(seed, abnormal=abnormal, fixtures_dir=fixtures_dir, lesion=lesion)
    elif base == "dicom":
        scan = make_dicom_patient(seed, abnormal=abnormal, fixtures_dir=fixtures_dir, lesion=lesion)
    elif base == "synthetic":
        scan = make_patient(seed, abnormal=abnormal, coverage=COVERAGES[seed % len(COVERAGES)], lesion=lesion)
    else:
        raise ValueError(f"base must be one of {', '.join(BASES)}, not {base!r}")
    prop = propose(scan.volume)
    abnormal_sides = {les.side for les in scan.truth.lesions}
    if prop.status != "proposed" or (abnormal and not abnormal_sides):
        return None
    images = build_scan_images(scan.volume, prop.boxes, {"image": image_cfg})
    out = DensePatient(seed, int(abnormal), base == "real", base)
    for side, si in images.items():
        lesion_mask = scan.masks.get(f"lesion_{side}")
        if lesion_mask is not None and lesion_mask.any():
            mask_vol = Volume((-200 + 600 * lesion_mask.astype(np.int16)).astype(np.int16), scan.volume.affine)
            mask = build_scan_images(mask_vol, {side: prop.boxes[side]}, {"image": image_cfg})[side].images[:, 1] > 0.5
        else:
            mask = np.zeros(si.images[:, 1].shape, bool)
        out.sides[side] = DenseSide(si.images.astype(np.float16), mask, np.asarray(si.z_mm, float),
                                    int(side in abnormal_sides))
    return out


def _one(job: tuple) -> DensePatient | None:
    seed, abnormal, base, image_cfg, fixtures = job
    return dense_patient(seed, abnormal, image_cfg, base=base, fixtures_dir=fixtures)


def dense_cohort(seed: int, n: int, image_cfg: dict, *, abnormal_fraction: float = 0.5, real_fraction: float = 0.0,
                 processes: int = 2, fixtures_dir: str | Path | None = None, real_base: str = "real"
                 ) -> list[DensePatient]:
    """``n`` patients drawn from ``seed`` (patient seeds ``seed * 1000 + i``), each abnormal with probability
    ``abnormal_fraction`` and on the real base ``real_base`` (``real`` or ``dicom``) with ``real_fraction``;
    those turned away are left out."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        abnormal = bool(rng.random() < abnormal_fraction)
        real = bool(rng.random() < real_fraction)
        jobs.append((seed * 1000 + i, abnormal, real_base if real else "synthetic", image_cfg, fixtures_dir))
    if processes <= 1:
        found = [_one(j) for j in jobs]
    else:
        with mp.get_context("spawn").Pool(processes) as pool:
            found = pool.map(_one, jobs, chunksize=2)
    return [p for p in found if p is not None]
