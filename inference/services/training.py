"""Training a run: the run's start (configuration and shared initial weights), one fold, and the aggregation
that joins the folds into out-of-fold and test predictions and a model version.

The jobs that call these are in ``inference.tasks`` (``train`` on cpu fans out one ``train_fold`` per fold on
gpu, CUDA when present, and joins them in ``train_aggregate``); each step is idempotent, so a re-delivered job
repeats nothing that was done: ``init.pt`` is written once, a fold resumes from its last finished epoch, the
aggregation rewrites the same file and keeps the version it gave.
"""
from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from django.db import transaction
from django.db.models import Max

from adrenal_site.jobs.runner import no_progress
from adrenal_site.locking import lock
from adrenal_site.storage import discard_stored, storage_name
from annotations.models import Dataset, Series, Volume
from inference.ml import atomic
from inference.ml.acquisition import acquisition_range
from inference.ml.mil import train_fold_mil
from inference.ml.supervision import side_labels
from inference.ml.training import fresh_model, load_ensemble, train_fold

from ..models import FoldRun, TrainingRun
from .runs import ACQUISITION_FILE, run_dir, scan_contrast
from .gland_data import gland_samples, gland_scans, is_gland_run, scan_sample
from .images import build_many
from .training_data import fold_data, image_rows

ProgressFn = Callable[[float, str], None]
PRED_COLUMNS = ["image_id", "series_id", "series_uid", "patient", "label", "slice_index", "z_mm", "split", "fold",
                "prob"]


def prepare_run(run: TrainingRun) -> None:
    """Write ``config.json`` and, once, ``init.pt``: one fresh model, the same start for every fold. The 2.5D
    images a joined run needs are built before its folds by :func:`build_run_images` (the ``train_images``
    job); a per-gland run crops its glands in its fold jobs."""
    out = run_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "config.json", json.dumps(run.config, indent=1))
    if not (out / "init.pt").is_file():
        model, used = fresh_model(run.config)
        with atomic.atomic_path(out / "init.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        TrainingRun.objects.filter(pk=run.pk).update(pretrained=used)


def needs_images(run: TrainingRun) -> bool:
    """Whether the run trains on stored 2.5D images (a joined run) that :func:`build_run_images` must make
    current before its folds; per-gland runs crop from the stored volumes."""
    return not is_gland_run(run.config)


def build_run_images(run: TrainingRun, progress: ProgressFn = no_progress) -> dict:
    """Build or refresh the 2.5D images of the run's labelled scans with boxes (confirmed, else proposed) at
    the run's crop settings: missing ones are built, ones made from other box versions or settings rebuilt,
    current ones kept (``services.images.build_many``). Returns its report; raises ValueError when no
    labelled scan has images afterwards."""
    ids = [g.series_id for g in gland_scans(run.dataset)]
    report = build_many(Series.objects.filter(pk__in=ids), (run.config or {}).get("image"), use_proposed=True,
                        progress=progress)
    if not image_rows(run.dataset):
        reasons = "; ".join(f"series {e['series']}: {e['error']}" for e in report["errors"][:5])
        raise ValueError(f"no labelled 2.5D images in dataset {run.dataset.name!r}" + (f" ({reasons})" if reasons else ""))
    return report


def train_one_fold(run: TrainingRun, fold: int, progress: ProgressFn = no_progress) -> dict:
    """Train fold ``fold`` from the run's init.pt, resuming from its last finished epoch; the per-epoch history
    goes to the FoldRun as it comes. Returns ``{"fold", "best_epoch", "val_loss", "resumed_from_epoch"}``."""
    torch.set_num_threads(int(os.environ.get("ADRENAL_FOLD_THREADS", "1")))
    fr = FoldRun.objects.get(run=run, fold=fold)
    out = run_dir(run) / f"fold{fold}"
    last_report = [0.0]

    def deleted() -> None:  # the run deleted while this fold trained: its deletion's removal ran before these files
        discard_stored(storage_name(run_dir(run)))
        raise FoldRun.DoesNotExist(f"run {run.pk} was deleted while fold {fold} trained; its files were removed")

    def on_batch(done: int, total: int) -> None:
        if time.monotonic() - last_report[0] > 1.0:
            last_report[0] = time.monotonic()
            progress(100.0 * done / max(total, 1), f"fold {fold}: step {done}/{total}")

    def on_epoch(entry: dict, history: list[dict]) -> None:
        best = min(history, key=lambda h: h["val_loss"])
        if not FoldRun.objects.filter(pk=fr.pk).update(epoch=entry["epoch"], history=history,
                                                       best_epoch=best["epoch"], val_loss=best["val_loss"]):
            deleted()
        progress(100.0 * entry["epoch"] / run.config["epochs"], f"fold {fold}: epoch {entry['epoch']}")

    if is_gland_run(run.config):
        train_p = {p for k, f in enumerate(run.split.folds) if k != fold for p in f}
        samples = gland_samples(run.dataset, train_p | set(run.split.folds[fold]), run.config)
        val_p = set(run.split.folds[fold])
        result = train_fold_mil(run.config, run_dir(run) / "init.pt", [s for s in samples if s.patient in train_p],
                                [s for s in samples if s.patient in val_p], out, fold=fold, on_epoch=on_epoch,
                                on_batch=on_batch)
    else:
        result = train_fold(run.config, run_dir(run) / "init.pt", fold_data(run, fold), out, fold=fold,
                            on_epoch=on_epoch, on_batch=on_batch)
    if not FoldRun.objects.filter(pk=fr.pk).update(
            history=result["history"], best_epoch=result["best_epoch"], val_loss=result["val_loss"],
            weights=storage_name(out / "best.pt")):
        deleted()
    return {"fold": fold, "best_epoch": result["best_epoch"], "val_loss": result["val_loss"],
            "resumed_from_epoch": result["resumed_from"]}


def _gland_records(run: TrainingRun, ensemble, progress: ProgressFn) -> list[dict]:
    """predictions.csv rows of a per-gland run: one per image of each side (``side`` column), cropped from the
    stored volumes as the folds were."""
    n = len(run.split.folds)
    fold_of = {p: k for k, f in enumerate(run.split.folds) for p in f}
    test = set(run.split.test_patients)
    scans = [g for g in gland_scans(run.dataset) if g.patient in test or g.patient in fold_of]
    records = []
    for i, g in enumerate(scans):
        sample = scan_sample(g, run.config)
        truth = side_labels(g.label, g.sides)
        for side, bag in sample.bags.items():
            probs = ensemble.predict(bag.images.astype("float32"))
            for j, (z, p) in enumerate(zip(bag.z_mm, probs)):
                rec = {"image_id": "", "series_id": g.series_id, "series_uid": g.series_uid, "patient": g.patient,
                       "label": g.label, "slice_index": j, "z_mm": round(float(z), 3), "side": side,
                       "side_label": "" if truth[side] is None else truth[side]}
                if g.patient in test:
                    rec |= {"split": "test", "fold": "", "prob": round(float(p.mean()), 6)}
                    rec |= {f"prob_fold{k}": round(float(p[k]), 6) for k in range(n)}
                else:
                    k = fold_of[g.patient]
                    rec |= {"split": "trainval", "fold": k, "prob": round(float(p[k]), 6)}
                    rec |= {f"prob_fold{j2}": "" for j2 in range(n)}
                records.append(rec)
        progress(90.0 * (i + 1) / max(len(scans), 1), f"predicted {i + 1}/{len(scans)} scans")
    return records


def aggregate_run(run: TrainingRun, progress: ProgressFn = no_progress) -> dict:
    """Out-of-fold predictions for train-val images and the fold models' predictions on test images, written to
    ``predictions.csv``, and the train-val scans' voxel-size range (``acquisition.json``); the run gets the
    dataset's next model version (kept on a rerun)."""
    out = run_dir(run)
    n = len(run.split.folds)
    ensemble = load_ensemble([out / f"fold{k}" / "best.pt" for k in range(n)], run.config)
    gland = is_gland_run(run.config)
    records = (_gland_records if gland else _joined_records)(run, ensemble, progress)
    _write_predictions(out, records, n, with_side=gland)
    _write_acquisition(out, records)
    return _version(run, len(records), progress)


def _joined_records(run: TrainingRun, ensemble, progress: ProgressFn) -> list[dict]:
    """predictions.csv rows of a joined (original) run: one per stored 2.5D image."""
    n = len(run.split.folds)
    fold_of = {p: k for k, f in enumerate(run.split.folds) for p in f}
    test = set(run.split.test_patients)
    rows = [r for r in image_rows(run.dataset) if r.patient in test or r.patient in fold_of]
    records = []
    batch = 256
    for s in range(0, len(rows), batch):
        chunk = rows[s:s + batch]
        probs = ensemble.predict(np.stack([np.load(r.path).astype(np.float32) for r in chunk]))
        for r, p in zip(chunk, probs):
            rec = {"image_id": r.image_id, "series_id": r.series_id, "series_uid": r.series_uid, "patient": r.patient,
                   "label": r.label, "slice_index": r.slice_index, "z_mm": round(r.z_mm, 3)}
            if r.patient in test:
                rec |= {"split": "test", "fold": "", "prob": round(float(p.mean()), 6)}
                rec |= {f"prob_fold{k}": round(float(p[k]), 6) for k in range(n)}
            else:
                k = fold_of[r.patient]
                rec |= {"split": "trainval", "fold": k, "prob": round(float(p[k]), 6)}
                rec |= {f"prob_fold{j}": "" for j in range(n)}
            records.append(rec)
        progress(90.0 * (s + len(chunk)) / max(len(rows), 1), f"predicted {s + len(chunk)}/{len(rows)} images")
    return records


def _write_predictions(out, records: list[dict], n: int, with_side: bool = False) -> None:
    cols = PRED_COLUMNS + (["side", "side_label"] if with_side else []) + [f"prob_fold{k}" for k in range(n)]
    with atomic.atomic_path(out / "predictions.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(records)


def _write_acquisition(out, records: list[dict]) -> None:
    """``acquisition.json``: the voxel-size range of the train-val scans and how many record a contrast agent
    (what the model was validated on; a verdict outside it carries a caution, ``inference.ml.acquisition``)."""
    ids = {r["series_id"] for r in records if r["split"] == "trainval"}
    volumes = Volume.objects.filter(series_id__in=ids).select_related("series")
    spacings = [v.spacing_mm for v in volumes]
    contrast = [scan_contrast(v.series) for v in volumes]
    atomic.write_text(out / ACQUISITION_FILE, json.dumps(acquisition_range(spacings, contrast), indent=1))


def _version(run: TrainingRun, n_records: int, progress: ProgressFn) -> dict:
    with transaction.atomic():
        lock(Dataset, run.dataset_id)
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.version is None:
            top = TrainingRun.objects.filter(dataset_id=run.dataset_id).aggregate(v=Max("version"))["v"] or 0
            run.version = top + 1
            run.save(update_fields=["version"])
    progress(100.0, f"model version {run.version}")
    return {"run": run.pk, "version": run.version, "images": n_records}
