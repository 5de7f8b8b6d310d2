"""Training jobs: the run (cpu) fans out one fold job per fold (gpu queue, CUDA when present); the last fold
to finish (counter ``TrainingRun.folds_done`` under ``select_for_update``) queues one idempotent aggregation
job that writes ``predictions.csv`` and makes the run a model version.

Artifacts (MEDIA_ROOT/runs/<run_id>/): config.json, init.pt, fold<k>/best.pt, fold<k>/last.pt,
fold<k>/history.json, predictions.csv.
"""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import JobCancelled, Progress, enqueue, finish, job_task


def run_dir(run) -> Path:
    return Path(settings.MEDIA_ROOT) / f"runs/{run.pk}"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


@job_task(queue="cpu")
def train_run_job(job, run_id: int) -> dict:
    """Save the configuration and the initial weights once, then queue the fold jobs not queued yet."""
    import torch

    from inference.ml.training import fresh_model
    from inference.models import FoldRun, TrainingRun

    run = TrainingRun.objects.get(pk=run_id)
    if run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        return {"status": run.status}
    out = run_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "config.json", json.dumps(run.config, indent=1))
    if not (out / "init.pt").is_file():
        model, used = fresh_model(run.config)
        tmp = out / ".tmp-init.pt"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, out / "init.pt")
        TrainingRun.objects.filter(pk=run.pk).update(pretrained=used)
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(status=TrainingRun.Status.RUNNING)
    with transaction.atomic():
        for fold in FoldRun.objects.select_for_update().filter(run=run, job__isnull=True):
            fold.job = enqueue(train_fold_job, kind="train_fold", params={"run_id": run.pk, "fold": fold.fold},
                               user=job.created_by, parent=job)
            fold.save(update_fields=["job"])
    Progress(job)(5.0, f"{run.folds.count()} folds queued")
    return {"run": run.pk}  # stays running: the aggregation step finishes this job


def fold_data(run, fold: int):
    """Training and validation images of a fold (patients from the run's split)."""
    from inference.ml.training import FoldData
    from inference.training_service import image_rows

    val = set(run.split.folds[fold])
    train = {p for k, f in enumerate(run.split.folds) if k != fold for p in f}
    rows = image_rows(run.dataset)
    tr = [r for r in rows if r.patient in train]
    va = [r for r in rows if r.patient in val]
    load = lambda rs: (np.stack([np.load(r.path) for r in rs]) if rs else np.zeros((0, 3, 1, 2), np.float16))  # noqa: E731
    return FoldData(load(tr), np.array([r.label for r in tr]), load(va), np.array([r.label for r in va]))


@job_task(queue="gpu")
def train_fold_job(job, run_id: int, fold: int) -> dict:
    """Train one fold from the run's init.pt, resuming from its last epoch when it was interrupted."""
    import torch

    from inference.ml.training import train_fold
    from inference.models import FoldRun, TrainingRun

    torch.set_num_threads(int(os.environ.get("ADRENAL_FOLD_THREADS", "1")))
    run = TrainingRun.objects.select_related("split", "dataset").get(pk=run_id)
    fr = FoldRun.objects.get(run=run, fold=fold)
    if run.status == TrainingRun.Status.CANCELLED:
        raise JobCancelled(f"run {run.pk} cancelled")
    if fr.status == FoldRun.Status.SUCCEEDED:
        _fold_finished(run.pk, fold)  # a re-delivery after success: make sure it was counted
        return {"fold": fold, "already": True}
    progress = Progress(job)
    FoldRun.objects.filter(pk=fr.pk).update(status=FoldRun.Status.RUNNING)
    out = run_dir(run) / f"fold{fold}"
    last_report = [0.0]

    def on_batch(done: int, total: int) -> None:
        if time.monotonic() - last_report[0] > 1.0:
            last_report[0] = time.monotonic()
            progress(100.0 * done / max(total, 1), f"fold {fold}: step {done}/{total}")

    def on_epoch(entry: dict, history: list[dict]) -> None:
        best = min(history, key=lambda h: h["val_loss"])
        FoldRun.objects.filter(pk=fr.pk).update(epoch=entry["epoch"], history=history, best_epoch=best["epoch"],
                                                val_loss=best["val_loss"])
        progress(100.0 * entry["epoch"] / run.config["epochs"], f"fold {fold}: epoch {entry['epoch']}")

    try:
        data = fold_data(run, fold)
        result = train_fold(run.config, run_dir(run) / "init.pt", data, out, fold=fold, on_epoch=on_epoch,
                            on_batch=on_batch)
    except JobCancelled:
        FoldRun.objects.filter(pk=fr.pk).update(status=FoldRun.Status.CANCELLED)
        raise
    except Exception:
        FoldRun.objects.filter(pk=fr.pk).update(status=FoldRun.Status.FAILED)
        _run_failed(run.pk, f"fold {fold} failed")
        raise
    FoldRun.objects.filter(pk=fr.pk).update(
        history=result["history"], best_epoch=result["best_epoch"], val_loss=result["val_loss"],
        weights=str((out / "best.pt").relative_to(settings.MEDIA_ROOT)))
    _fold_finished(run.pk, fold)
    return {"fold": fold, "best_epoch": result["best_epoch"], "val_loss": result["val_loss"],
            "resumed_from_epoch": result["resumed_from"]}


def _fold_finished(run_id: int, fold: int) -> None:
    """Count the fold once, under the run's row lock; the last one queues the aggregation."""
    from inference.models import FoldRun, TrainingRun

    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        fr = FoldRun.objects.select_for_update().get(run=run, fold=fold)
        if fr.status != FoldRun.Status.SUCCEEDED:
            fr.status = FoldRun.Status.SUCCEEDED
            fr.save(update_fields=["status"])
            run.folds_done += 1
            run.save(update_fields=["folds_done"])
        all_done = run.folds_done >= run.folds.count()
        if all_done and run.status == TrainingRun.Status.RUNNING:
            run.status = TrainingRun.Status.AGGREGATING
            run.save(update_fields=["status"])
            enqueue(aggregate_run_job, kind="train_aggregate", params={"run_id": run.pk},
                    parent=Job.objects.filter(pk=run.job_id).first())


def _run_failed(run_id: int, message: str) -> None:
    from inference.models import TrainingRun

    TrainingRun.objects.filter(pk=run_id, status__in=["queued", "running", "aggregating"]).update(
        status=TrainingRun.Status.FAILED, finished_at=timezone.now())
    run = TrainingRun.objects.get(pk=run_id)
    if run.job_id:
        job = Job.objects.get(pk=run.job_id)
        if job.status in Job.ACTIVE:
            finish(job, Job.Status.FAILED, message=message, error=message)


PRED_COLUMNS = ["image_id", "series_id", "series_uid", "patient", "label", "slice_index", "z_mm", "split", "fold",
                "prob"]


@job_task(queue="gpu")
def aggregate_run_job(job, run_id: int) -> dict:
    """Out-of-fold predictions for train-val images, the fold models' predictions on test images; then the
    run succeeds and gets the dataset's next model version. Re-running rewrites the same file."""
    from annotations.models import Dataset
    from inference.ml.training import load_ensemble
    from inference.models import TrainingRun
    from inference.training_service import image_rows

    run = TrainingRun.objects.select_related("split", "dataset").get(pk=run_id)
    if run.status == TrainingRun.Status.SUCCEEDED:
        return {"run": run.pk, "version": run.version, "already": True}
    if run.status != TrainingRun.Status.AGGREGATING:
        return {"run": run.pk, "status": run.status}
    progress = Progress(job)
    out = run_dir(run)
    n = len(run.split.folds)
    weights = [out / f"fold{k}" / "best.pt" for k in range(n)]
    ensemble = load_ensemble(weights, run.config)
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
    tmp = out / ".tmp-predictions.csv"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, PRED_COLUMNS + [f"prob_fold{k}" for k in range(n)])
        w.writeheader()
        w.writerows(records)
    os.replace(tmp, out / "predictions.csv")
    with transaction.atomic():
        Dataset.objects.select_for_update().get(pk=run.dataset_id)
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.status == TrainingRun.Status.AGGREGATING:
            top = TrainingRun.objects.filter(dataset_id=run.dataset_id).aggregate(v=Max("version"))["v"] or 0
            run.version = top + 1
            run.status = TrainingRun.Status.SUCCEEDED
            run.finished_at = timezone.now()
            run.save()  # through save(): the evaluation area evaluates a run that just succeeded
    if run.job_id:
        parent = Job.objects.get(pk=run.job_id)
        if parent.status in Job.ACTIVE:
            finish(parent, Job.Status.SUCCEEDED, message=f"model version {run.version}",
                   result={"run": run.pk, "version": run.version})
    return {"run": run.pk, "version": run.version, "images": len(records)}
