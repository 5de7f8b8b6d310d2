"""Training runs through a real Celery worker (concurrency 2): folds in parallel, aggregation with
out-of-fold predictions, the train command's --json, cancelling, and a worker killed mid-fold resuming."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command

from adrenal_site.jobs.models import Job
from inference.models import FoldRun, TrainingRun
from tests.conftest import Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

DONE = ("succeeded", "failed", "cancelled")


def _run(pk: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=pk)


def test_tiny_run_on_worker_ends_with_artifacts_and_oof_predictions(celery_worker_proc, training_cohort):
    ds = training_cohort("w-tiny", n_patients=15)
    out = io.StringIO()
    call_command("train", "--dataset", "w-tiny", "--preset", "tiny", "--set", "epochs=3", "--wait", "--json",
                 "--timeout", "240", stdout=out)
    doc = json.loads(out.getvalue())
    run = _run(doc["run"])
    assert doc["status"] == run.status == "succeeded", Path(celery_worker_proc.log).read_text()[-3000:]
    assert set(doc) == {"run", "status", "split", "folds", "left_out"} and doc["left_out"] == []
    assert doc["split"] == {"version": 1, "test_patients": run.split.test_patients, "folds": run.split.folds}
    assert [f["fold"] for f in doc["folds"]] == [0, 1, 2, 3, 4]
    assert all(f["best_epoch"] in (1, 2, 3) and f["val_loss"] > 0 for f in doc["folds"])
    assert run.version == 1 and run.artifacts_dir == f"runs/{run.pk}" and run.folds_done == 5

    media = Path(settings.MEDIA_ROOT) / run.artifacts_dir
    assert json.loads((media / "config.json").read_text())["preset"] == "tiny"
    assert (media / "init.pt").is_file()
    for k in range(5):
        hist = json.loads((media / f"fold{k}" / "history.json").read_text())
        assert [h["epoch"] for h in hist] == [1, 2, 3]
        assert FoldRun.objects.get(run=run, fold=k).history == hist

    # folds ran in parallel: at least two fold jobs overlapped in time
    jobs = list(Job.objects.filter(kind="train_fold", parent_id=run.job_id))
    assert len(jobs) == 5 and all(j.status == "succeeded" and j.queue == "gpu" for j in jobs)
    assert any(a.started_at < b.finished_at and b.started_at < a.finished_at
               for a in jobs for b in jobs if a.pk < b.pk)
    assert Job.objects.get(pk=run.job_id).status == "succeeded"

    # predictions.csv: every train-val image once, from the fold whose validation held its patient
    from inference.ml.training import load_ensemble
    from inference.services.training_data import image_rows

    rows = list(csv.DictReader(open(media / "predictions.csv")))
    images = {r.image_id: r for r in image_rows(ds)}
    assert sorted(int(r["image_id"]) for r in rows) == sorted(images)
    fold_of = {p: k for k, f in enumerate(run.split.folds) for p in f}
    ens = load_ensemble([media / f"fold{k}" / "best.pt" for k in range(5)], run.config)
    for r in rows:
        p = ens.predict(np.load(images[int(r["image_id"])].path)[None].astype(np.float32))[0]
        if r["split"] == "trainval":
            k = int(r["fold"])
            assert k == fold_of[r["patient"]] and r["patient"] not in run.split.test_patients
            train_patients = {p_ for j, f in enumerate(run.split.folds) if j != k for p_ in f}
            assert r["patient"] not in train_patients
            assert float(r["prob"]) == pytest.approx(p[k], abs=1e-4)
            assert r["prob_fold0"] == ""
        else:
            assert r["split"] == "test" and r["fold"] == "" and r["patient"] in run.split.test_patients
            per_fold = [float(r[f"prob_fold{k}"]) for k in range(5)]
            assert per_fold == pytest.approx(list(p), abs=1e-4)
            assert float(r["prob"]) == pytest.approx(np.mean(per_fold), abs=1e-5)
        assert r["label"] == str(images[int(r["image_id"])].label)


def test_cancel_stops_a_run(celery_worker_proc, training_cohort):
    from inference.services.runs import cancel_run
    from inference.tasks import start_run

    ds = training_cohort("w-cancel", n_patients=15)
    run = start_run(ds, "tiny", overrides={"epochs": 400})
    wait_for(lambda: FoldRun.objects.filter(run=run, epoch__gte=1).exists(), timeout=120, what="a first epoch")
    cancel_run(_run(run.pk))
    wait_for(lambda: not Job.objects.filter(kind="train_fold", parent_id=run.job_id, status__in=Job.ACTIVE).exists(),
             timeout=60, what="fold jobs to stop")
    run = _run(run.pk)
    assert run.status == "cancelled" and run.version is None
    assert not (Path(settings.MEDIA_ROOT) / run.artifacts_dir / "predictions.csv").exists()
    assert {f.status for f in FoldRun.objects.filter(run=run)} == {"cancelled"}
    assert all(f.epoch < 400 for f in FoldRun.objects.filter(run=run))
    statuses = set(Job.objects.filter(kind="train_fold", parent_id=run.job_id).values_list("status", flat=True))
    assert statuses <= {"cancelled"}


def test_killed_worker_resumes_fold_from_last_epoch(celery_worker_proc, training_cohort):
    from inference.tasks import start_run

    ds = training_cohort("w-kill", n_patients=15)
    epochs = 60
    run = start_run(ds, "tiny", overrides={"epochs": epochs})
    fold = wait_for(lambda: FoldRun.objects.filter(run=run, job__status="running", epoch__gte=2).first(), timeout=120,
                    what="a fold mid-way")
    celery_worker_proc.kill()
    at_kill = FoldRun.objects.get(pk=fold.pk).epoch
    assert 0 < at_kill < epochs
    worker = Worker()  # same node name: its orphaned jobs are re-sent at start
    worker.start()
    try:
        wait_for(lambda: _run(run.pk).status in DONE, timeout=300, what="the run to finish")
    finally:
        worker.stop()
    run = _run(run.pk)
    assert run.status == "succeeded", worker.log.read_text()[-3000:]
    fold = FoldRun.objects.get(pk=fold.pk)
    assert [h["epoch"] for h in fold.history] == list(range(1, epochs + 1))
    job = Job.objects.get(pk=fold.job_id)
    assert job.attempts >= 2
    assert job.result["resumed_from_epoch"] is not None and job.result["resumed_from_epoch"] >= at_kill
    assert (Path(settings.MEDIA_ROOT) / run.artifacts_dir / "predictions.csv").is_file()
