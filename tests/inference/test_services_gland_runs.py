"""A per-gland run through the services, as `train` runs it: no 2.5D images built first (the run crops each
gland from the stored volume and boxes), MIL folds on the scan labels, predictions with a side column,
evaluation by the run's own rule with calibration, and a verdict with per-side findings and evidence maps."""
from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.slow

GLAND_TINY = {"epochs": 3, "lr": 0.01, "batch_size": 16, "n_folds": 3, "supervision": "mil", "aggregator": "sides",
              "calibration": "temperature", "mil": {"top_k": 1, "steps_per_epoch": 6},
              "image": {"layout": "side", "side_px": 16, "pixel_spacing_mm": 2.0, "slice_spacing_mm": 3.0,
                        "stride_mm": 3.0}}


def test_per_gland_run_trains_evaluates_and_judges(db, settings, tmp_path, training_cohort, realct):
    from adrenal_site.jobs.models import Job
    from inference.models import Image25D, Prediction
    from inference.services import runs, training
    from inference.services.evaluation import evaluate_run
    from inference.ml.metrics import Bootstrap
    from inference.ml.volume import load_nifti
    from inference.services.prediction import judge_volume

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("gland-ds", n_patients=15, build=False)
    assert not Image25D.objects.exists()
    job = Job.objects.create(kind="train", params={})
    run = runs.create_run(ds, "tiny", job, overrides=GLAND_TINY)
    assert len(run.split.test_patients) == 3 and sum(len(f) for f in run.split.folds) == 12
    training.prepare_run(run)
    for k in range(3):
        r = training.train_one_fold(run, k)
        assert r["best_epoch"] is not None
    assert training.aggregate_run(run)["version"] == 1
    with open(runs.run_dir(run) / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["side"] for r in rows} == {"R", "L"} and {r["split"] for r in rows} == {"trainval", "test"}
    ev = evaluate_run(run, "youden", boot=Bootstrap(n=50))
    res = ev.result
    assert ev.aggregator == "sides" and res["aggregator"] == "sides" and "fraction" in res["aggregators"]
    assert res["aggregators"]["sides"]["top_k"] == 1
    assert res["calibration"]["fit"]["method"] == "temperature" and len(res["calibration"]["oof"]["reliability"]) == 10
    assert all(set(s["sides"]) == {"R", "L"} for s in res["scans"])
    # a verdict on the real CT (boxes proposed) with the run's own rule, per side, with evidence placed in mm
    run.refresh_from_db()
    outcome = judge_volume(load_nifti(realct["example_ct"]), run)
    assert outcome.verdict in (Prediction.Verdict.NORMAL, Prediction.Verdict.ABNORMAL), outcome.reason
    f = outcome.fields(run.operating_value)
    assert set(f["side_details"]) == {"R", "L"} and set(f["sides"]) == {"R", "L"}
    assert f["score"] == pytest.approx(max(d["score"] for d in f["side_details"].values()), abs=1e-6)
    assert f["verdict"] == ("abnormal" if f["score"] >= run.operating_value else "normal")
    for e in f["evidence"]:
        assert e["side"] in "RL" and len(e["peak_lps"]) == 3 and e["heat"]["shape"][0] == len(e["heat"]["values"])
    series = ds.patients.first().studies.first().series.first()
    stored = Prediction.objects.create(series=series, run=run, **f)  # the new fields store and read back
    stored.refresh_from_db()
    assert stored.side_details == f["side_details"] and stored.evidence == f["evidence"]


@pytest.mark.django_db(transaction=True)  # the runner closes connections between jobs
def test_a_joined_run_builds_the_images_it_needs(settings, tmp_path, training_cohort, monkeypatch):
    """``train`` → child ``train_images`` (built or refreshed) → its continuation ``train_folds`` queues the folds
    under the run's job, which waits for them."""
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import run_now
    from annotations.models import CropBox
    from inference.models import Image25D
    from inference.tasks import start_run, train_folds_job, train_images_job, train_run_job

    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr("adrenal_site.jobs.runner.send_job", lambda job: None)  # run here, one by one
    ds = training_cohort("joined-ds", n_patients=10, build=False)
    run = start_run(ds, "tiny", overrides={"image": {"side_px": 16, "pixel_spacing_mm": 2.0}})
    assert not Image25D.objects.exists()  # accepted without images: the run builds them
    train = run_now(train_run_job, run.job)
    assert train.status == "running" and train.awaiting_children and not run.folds.filter(job__isnull=False).exists()
    images = train.children.get(kind="images25d")
    assert run_now(train_images_job, images).status == "succeeded"
    assert Image25D.objects.filter(series__study__patient__dataset=ds).values("series").distinct().count() == 10
    folds = train.children.get(kind="train_folds")  # the continuation, a sibling: the run still waits
    train.refresh_from_db()
    assert train.status == "running" and folds.status == "queued"
    assert run_now(train_folds_job, folds).status == "succeeded"
    assert run.folds.filter(job__parent=train).count() == len(run.split.folds)
    train.refresh_from_db()
    assert train.status == "running" and train.awaiting_children
    # a second build keeps current images and refreshes a scan whose box moved
    from inference.services.training import build_run_images
    first = {r.pk for r in Image25D.objects.all()}
    assert build_run_images(run)["built"] == 0 and {r.pk for r in Image25D.objects.all()} == first
    box = CropBox.objects.filter(series__study__patient__dataset=ds).order_by("pk").first()
    CropBox.objects.filter(pk=box.pk).update(version=box.version + 1, lps_max=[v + 4.0 for v in box.lps_max])
    assert build_run_images(run)["built"] == 1
    assert Job.objects.filter(kind="train_fold", parent=train).count() == len(run.split.folds)
