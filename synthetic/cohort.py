"""``make_cohort``: a synthetic cohort written as raw DICOM plus ground_truth.csv (and previews)."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from inference.ml.volume import Volume

from .acquisition import PROFILES
from .dicom_writer import SeriesInfo, hexname, uid, write_axial_series, write_localizer
from .preview import montage
from .real_base import make_real_patient
from .scan import SyntheticScan, make_patient
from .truth import TruthRow, read_ground_truth, write_ground_truth

BODY_PART = {"abdomen": "ABDOMEN", "upper_abdomen": "ABDOMEN", "cap": "CHEST_TO_PELVIS", "chest_only": "CHEST",
             "pelvis_only": "PELVIS"}


def patient_name(n: int) -> str:
    return f"SYN{n:04d}"


def thick_version(volume: Volume, target_mm: float) -> tuple[Volume, float]:
    """Average groups of adjacent slices into thicker ones (as a scanner's thick reconstruction)."""
    step = float(volume.spacing[2])
    g = max(2, int(round(target_mm / step)))
    nk = volume.shape[0] // g
    arr = volume.array[: nk * g].astype(np.float32).reshape(nk, g, *volume.shape[1:]).mean(axis=1)
    aff = np.array(volume.affine, float)
    aff[:3, 3] = aff[:3, 3] + aff[:3, 2] * (g - 1) / 2
    aff[:3, 2] = aff[:3, 2] * g
    return Volume(np.rint(arr).astype(np.int16), aff), g * step


def write_patient(out_dir: Path, scan: SyntheticScan, name: str, *, seed: int, preview: bool,
                  base: str = "synthetic") -> list[TruthRow]:
    """Write one patient's study (main axial series, maybe a thick series and a localizer)."""
    rng = np.random.default_rng([seed, 17])
    acq = scan.acquisition
    signed = bool(rng.random() < 0.5)
    order = "head_first" if rng.random() < 0.6 else "feet_first"
    extras = PROFILES.get(acq.profile, PROFILES["default"])["extras"]  # share of studies with each extra series
    with_thick = bool(rng.random() < extras) and scan.volume.shape[0] >= 4
    with_loc = bool(rng.random() < extras)
    pid = f"SYN-{seed:010d}"[-14:]
    study = uid("study", name, seed)
    frame = uid("frame", name, seed)
    common = dict(patient_name=name, patient_id=pid, study_uid=study, frame_uid=frame,
                  study_date=f"20{10 + seed % 14:02d}{1 + seed % 12:02d}{1 + seed % 28:02d}",
                  body_part=BODY_PART.get(acq.coverage, "ABDOMEN"), phase=acq.phase, kvp=acq.kvp, kernel=acq.kernel,
                  sex="F" if rng.random() < 0.5 else "M", birth_date=f"19{40 + seed % 50:02d}0101", signed=signed,
                  instance_order=order)
    root = out_dir / scan.label / name / "DICOM" / hexname(name, 1) / hexname(name, 2) / hexname(name, 3)
    rows: list[TruthRow] = []
    extra = {"phase": acq.phase, "coverage": acq.coverage, "pixel_spacing_mm": f"{acq.pixel_mm:.4f}",
             "rescale": "signed" if signed else "unsigned", "base": base}

    def add(kind: str, number: int, series_uid: str, folder: Path, vol: Volume | None) -> None:
        e = dict(extra)
        if vol is not None:
            e.update(slice_spacing_mm=f"{float(vol.spacing[2]):.4f}", slices=str(vol.shape[0]))
        glands = scan.truth.glands if kind != "localizer" else {"R": None, "L": None}
        lesions = scan.truth.lesions if kind != "localizer" else []
        rows.append(TruthRow(name, scan.label, study, series_uid, number, kind, folder.relative_to(out_dir).as_posix(),
                             glands, lesions, e))

    phase_txt = {"non_contrast": "NC", "arterial": "ART", "portal_venous": "PV"}[acq.phase]
    if with_loc:
        s_uid = uid("series", name, seed, 1)
        folder = root / "SE00001_LOCALIZER"
        write_localizer(scan.volume, folder, SeriesInfo(**common, series_uid=s_uid, series_number=1,
                                                         description="TOPOGRAM"))
        add("localizer", 1, s_uid, folder, None)
    s_uid = uid("series", name, seed, 2)
    step = float(scan.volume.spacing[2])
    desc = f"AX {phase_txt} {step:g}mm"
    folder = root / f"SE00002_{desc.replace(' ', '_')}"
    names = [hexname(s_uid, k, n=10) for k in range(scan.volume.shape[0])]
    write_axial_series(scan.volume, folder, SeriesInfo(**common, series_uid=s_uid, series_number=2, description=desc),
                       names)
    add("axial", 2, s_uid, folder, scan.volume)
    if with_thick:
        thick, t_mm = thick_version(scan.volume, 5.0 if step < 5 else 10.0)
        s_uid = uid("series", name, seed, 3)
        desc = f"AX {phase_txt} {t_mm:g}mm"
        folder = root / f"SE00003_{desc.replace(' ', '_')}"
        names = [f"IM{n:05d}" for n in rng.permutation(thick.shape[0]) + 1]
        write_axial_series(thick, folder, SeriesInfo(**common, series_uid=s_uid, series_number=3, description=desc,
                                                     slice_thickness=t_mm), names)
        add("thick", 3, s_uid, folder, thick)
    if preview:
        les = ", ".join(f"{x.side} {x.type} {x.diameters_mm[0]:.0f}mm" for x in scan.truth.lesions) or "no lesion"
        montage(scan.volume, scan.truth.glands, f"{name} {scan.label} {acq.phase} {acq.coverage} {step:g}mm: {les}",
                out_dir / "preview" / f"{name}.png")
    return rows


def _one(args: tuple) -> list[TruthRow]:
    out_dir, n, pseed, abnormal, preview, profile, base, real_dir = args
    if base == "real":
        scan = make_real_patient(pseed, abnormal=abnormal, fixtures_dir=real_dir)
    else:
        scan = make_patient(pseed, abnormal=abnormal, profile=profile)
    scan.acquisition.profile = profile
    return write_patient(Path(out_dir), scan, patient_name(n), seed=pseed, preview=preview, base=base)


def make_cohort(out_dir: str | os.PathLike, patients: int, abnormal_fraction: float, seed: int, *,
                preview: bool = False, profile: str = "default", base: str = "synthetic", workers: int | None = None,
                real_fixtures_dir: str | os.PathLike | None = None) -> list[TruthRow]:
    """Write ``patients`` patients (``round(patients * abnormal_fraction)`` abnormal, chosen by ``seed``) to
    ``out_dir`` and ``out_dir/ground_truth.csv``; returns the truth rows. Same arguments -> identical files."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if not 0 <= abnormal_fraction <= 1:
        raise ValueError(f"abnormal_fraction must be within [0, 1], not {abnormal_fraction}")
    if base not in ("synthetic", "real"):
        raise ValueError(f"base must be 'synthetic' or 'real', not {base!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_abn = int(round(patients * abnormal_fraction))
    abnormal = np.zeros(patients, bool)
    abnormal[np.random.default_rng([seed, 1]).permutation(patients)[:n_abn]] = True
    jobs = [(str(out), n + 1, seed * 1000 + n + 1, bool(abnormal[n]), preview, profile, base,
             str(real_fixtures_dir) if real_fixtures_dir else None) for n in range(patients)]
    workers = workers if workers is not None else min(2, os.cpu_count() or 1, patients)
    import multiprocessing

    if workers > 1 and not multiprocessing.current_process().daemon:  # a Celery pool process can't fork more
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_one, jobs))
    else:
        results = [_one(j) for j in jobs]
    rows = [r for rs in results for r in rs]
    write_ground_truth(rows, out / "ground_truth.csv")
    return read_ground_truth(out / "ground_truth.csv")  # exactly what the file says (rounded to 1 um)


__all__ = ["make_cohort", "read_ground_truth", "write_patient", "thick_version"]
