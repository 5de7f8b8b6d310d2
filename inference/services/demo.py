"""The demo dataset that ``make run`` loads into an empty database: a synthetic cohort (profile "demo",
generated once under ``DATA_DIR/demo-cohort`` by the development package ``synthetic``), imported as the
dataset "Demo", then proposals and 2.5D images from them (the ``demo_pipeline`` job) before a ``fast`` run
that promotes itself once evaluated (``inference.tasks``)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings

from adrenal_site.jobs.runner import no_progress
from annotations.models import Dataset
from annotations.services.proposals import propose_series, scans_of
from inference.ml.images25d import image_config
from synthetic import make_cohort, read_ground_truth

from .images import build_series

DEMO_DATASET = "Demo"
DEMO_USERS = ("clinician", "lead", "admin")


DEMO_PATIENTS = (10, 500)  # 5 folds and a 20% test split need both labels in the test and a patient per fold


def demo_patients() -> int:
    """``ADRENAL_DEMO_PATIENTS`` (default 16). Raises ValueError naming the setting and its range for a value
    that is not a whole number in :data:`DEMO_PATIENTS` (fewer leave a fold empty: the demo's run would fail
    in the background, where nobody reads it; more take minutes per hundred to generate)."""
    raw = os.environ.get("ADRENAL_DEMO_PATIENTS", "16").strip()
    lo, hi = DEMO_PATIENTS
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ValueError(f"ADRENAL_DEMO_PATIENTS must be a whole number from {lo} to {hi} (the demo's run splits its "
                         f"patients into 5 folds and a 20% test set), not {raw[:20]!r}")
    return int(raw)


def ensure_cohort(patients: int | None = None, profile: str = "demo") -> tuple[Path, bool]:
    """The demo cohort's folder with ``patients`` patients (default ``ADRENAL_DEMO_PATIENTS``), generated when
    missing or when the one found holds another number of patients (an earlier ``make run`` with another
    ``ADRENAL_DEMO_PATIENTS``: it was imported as it stood while the command named the count asked for);
    ``(path, generated_now)``."""
    patients = demo_patients() if patients is None else patients
    out = settings.DATA_DIR / "demo-cohort"
    if (out / "ground_truth.csv").exists():
        if len({row.patient for row in read_ground_truth(out / "ground_truth.csv")}) == patients:
            return out, False
        shutil.rmtree(out)  # generated here, by this function: nothing of the user's
    make_cohort(out, patients, 0.5, 0, profile=profile)
    return out, True


def labels_csv(cohort: Path) -> Path:
    """``labels.csv`` beside the cohort's ground truth (written when missing): per patient its label and which
    adrenal is abnormal (``side``: R, L, RL or none, as a lead who read the reports would know it), so the demo's
    run learns each gland from its own label. Returns its path."""
    out = cohort / "labels.csv"
    if out.exists():
        return out
    label: dict[str, str] = {}
    sides: dict[str, set[str]] = {}
    for row in read_ground_truth(cohort / "ground_truth.csv"):
        label[row.patient] = row.label
        sides.setdefault(row.patient, set()).update(les.side for les in row.lesions)
    lines = ["patient,label,side"]
    for patient, value in label.items():
        side = "".join(s for s in "RL" if s in sides[patient])
        lines.append(f"{patient},{value},{side if value == 'abnormal' else 'none'}")
    out.write_text("\n".join(lines) + "\n")
    return out


def prepare_images(dataset: Dataset, progress=no_progress) -> dict:
    """Propose boxes for every scan, then build 2.5D images from them. Idempotent (unchanged boxes and images
    are kept). Returns ``{"proposals": n, "image_errors": [...]}``."""
    scans = list(scans_of(dataset.pk, None))
    progress(1, "proposing crop boxes")
    proposed = propose_series(scans, progress=lambda p, m="": progress(1 + 0.4 * p, m))
    cfg = image_config({})
    errors = []
    for i, series in enumerate(scans):
        progress(42 + 58 * i / max(len(scans), 1), f"2.5D images: scan {i + 1}/{len(scans)}")
        result = build_series(series, cfg, use_proposed=True)
        if "error" in result:
            errors.append(result)
    return {"proposals": len(proposed["series"]), "image_errors": errors}
