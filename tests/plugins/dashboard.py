"""Fixtures of the evaluation/dashboard area: a finished run with its artifacts, and a minimal headless
Chromium for Playwright."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest


def write_run_artifacts(run, series_by_patient: dict, labels: dict, test_patients: list[str], folds: list[list[str]],
                        media_root: Path, images_per_scan: int = 8, seed: int = 0) -> Path:
    """A predictions.csv as the training aggregation writes it (artifact contract), seeded: abnormal scans
    get higher image probabilities than normal ones, with overlap, so metrics are not trivial."""
    rng = np.random.default_rng(seed)
    n_folds = len(folds)
    fold_of = {p: k for k, ps in enumerate(folds) for p in ps}
    out = media_root / "runs" / str(run.pk)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["image_id", "series_id", "series_uid", "patient", "label", "slice_index", "z_mm", "split", "fold", "prob",
            *[f"prob_fold{k}" for k in range(n_folds)]]
    image_id = 0
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        for patient, series in series_by_patient.items():
            label = labels[patient]
            centre = rng.uniform(0.35, 0.8) if label else rng.uniform(0.1, 0.55)
            for s in series:
                for i in range(images_per_scan):
                    image_id += 1
                    p = float(np.clip(centre + rng.normal(0, 0.18), 0.001, 0.999))
                    test = patient in test_patients
                    row = {"image_id": image_id, "series_id": s.pk, "series_uid": s.series_uid, "patient": patient,
                           "label": label, "slice_index": i, "z_mm": round(-120.0 + 3.0 * i, 2),
                           "split": "test" if test else "trainval", "fold": "" if test else fold_of[patient],
                           "prob": round(p, 6)}
                    for k in range(n_folds):
                        row[f"prob_fold{k}"] = round(float(np.clip(p + rng.normal(0, 0.03), 0, 1)), 6) if test else ""
                    w.writerow(row)
    (out / "config.json").write_text(json.dumps(run.config))
    return out


@pytest.fixture
def make_evaluated_run(db, settings, tmp_path):
    """``make_evaluated_run(n_patients=30, evaluate=True, members=[users])`` -> (run, evaluation or None)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EVALUATION_BOOTSTRAP = 200

    def make(n_patients: int = 30, *, evaluate: bool = True, members=(), name: str = "eval-ds", seed: int = 0,
             objective: str = "accuracy", split=None):
        from annotations.models import Dataset, Label, Patient, Series, Study
        from inference.models import DatasetSplit, FoldRun
        from tests.factories import make_run

        ds, _ = Dataset.objects.get_or_create(name=name)
        for m in members:
            ds.members.add(m)
        patients, labels, series_by_patient = [], {}, {}
        for i in range(n_patients):
            pid = f"P{i:03d}"
            patient, _ = Patient.objects.get_or_create(dataset=ds, pseudo_id=pid)
            study, _ = Study.objects.get_or_create(patient=patient, study_uid=f"1.2.826.0.1.{i}")
            series, _ = Series.objects.get_or_create(study=study, series_uid=f"1.2.826.0.1.{i}.1",
                                                     defaults={"modality": "CT", "series_description": "abdomen"})
            patients.append(pid)
            labels[pid] = i % 2
            Label.assign(patient, "abnormal" if i % 2 else "normal", "ui")  # the store's, as the run saw them
            series_by_patient[pid] = [series]
        if split is None:
            test = [p for i, p in enumerate(patients) if i % 3 == 0]
            rest = [p for p in patients if p not in test]
            folds = [rest[k::5] for k in range(5)]
            split, _ = DatasetSplit.objects.get_or_create(dataset=ds, defaults={"test_patients": test, "folds": folds})
        run = make_run(ds, split, config={"preset": "tiny", "seed": seed})
        run.version = run.pk
        run.save()
        for fold in run.folds.all():
            k = fold.fold
            hist = [{"epoch": e, "train_loss": round(0.7 - 0.05 * e - 0.01 * k, 4),
                     "val_loss": round(0.72 - 0.03 * e + 0.01 * k, 4)} for e in range(1, 5)]
            FoldRun.objects.filter(pk=fold.pk).update(epoch=4, best_epoch=4, val_loss=hist[-1]["val_loss"],
                                                      history=hist)
        write_run_artifacts(run, series_by_patient, labels, split.test_patients, split.folds,
                            Path(settings.MEDIA_ROOT), seed=seed)
        evaluation = None
        if evaluate:
            from inference.services.evaluation import evaluate_run
            from inference.ml.metrics import Bootstrap

            evaluation = evaluate_run(run, objective, boot=Bootstrap(n=200, seed=0))
        return run, evaluation

    return make


@pytest.fixture
def make_run_from_predictions(db, settings, tmp_path):
    """``make_run_from_predictions(scans, test_patients, folds, config={}, members=())`` -> a finished run whose
    ``predictions.csv`` holds exactly ``scans``: ``(patient, label, probs)`` per scan, ``probs`` a list of image
    probabilities or ``{"R": [...], "L": [...]}`` for a per-gland run (``side`` column; ``label`` may then be
    ``(scan label, "R" | "L" | "RL")``, the abnormal sides, written as each image's ``side_label``); a patient listed
    twice has two scans. Train-val images carry the fold of ``folds`` that holds their patient out."""
    settings.MEDIA_ROOT = tmp_path / "media"

    def make(scans, test_patients, folds, config: dict | None = None, members=(), name: str = "recomputed"):
        from annotations.models import Label, Patient
        from tests.factories import make_dataset, make_run, make_series, make_split

        ds = make_dataset(name, members=members)
        run = make_run(ds, make_split(ds, test_patients, folds), config={"preset": "tiny", **(config or {})})
        fold_of = {p: k for k, f in enumerate(folds) for p in f}
        sided = any(isinstance(probs, dict) for _, _, probs in scans)
        out = Path(settings.MEDIA_ROOT) / run.artifacts_dir
        out.mkdir(parents=True, exist_ok=True)
        cols = ["image_id", "series_id", "series_uid", "patient", "label", "slice_index", "z_mm", "split", "fold",
                "prob", *(["side", "side_label"] if sided else [])]
        with open(out / "predictions.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, cols)
            w.writeheader()
            for patient, label, probs in scans:
                label, abnormal_sides = label if isinstance(label, tuple) else (label, None)
                series = make_series(ds, patient)
                Label.assign(Patient.objects.get(dataset=ds, pseudo_id=patient), "abnormal" if label else "normal",
                             "ui")
                test = patient in test_patients
                for side, side_probs in (probs if isinstance(probs, dict) else {"": probs}).items():
                    for i, p in enumerate(side_probs):
                        w.writerow({"image_id": f"{series.pk}-{side}{i}", "series_id": series.pk,
                                    "series_uid": series.series_uid, "patient": patient, "label": label,
                                    "slice_index": i, "z_mm": float(3 * i), "split": "test" if test else "trainval",
                                    "fold": "" if test else fold_of[patient], "prob": p,
                                    **({"side": side, "side_label": "" if abnormal_sides is None and label
                                        else int(side in (abnormal_sides or ""))} if sided else {})})
        return run

    return make


@pytest.fixture(scope="session")
def dashboard_chromium():
    """Debian's chromium, headless, through Playwright (no browser download)."""
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django's ORM calls here stay synchronous.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()
