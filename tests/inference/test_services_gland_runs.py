"""A per-gland run through the services, as `train` runs it: no 2.5D images built first (the run crops each
gland from the stored volume and boxes), MIL folds on the scan labels, predictions with a side column,
evaluation by the run's own rule with calibration, and a verdict with per-side findings and evidence maps."""
from __future__ import annotations

import csv
import html

import pytest

pytestmark = pytest.mark.slow

GLAND_TINY = {"epochs": 3, "lr": 0.01, "batch_size": 16, "n_folds": 3, "supervision": "mil", "aggregator": "sides",
              "calibration": "temperature", "mil": {"top_k": 1, "steps_per_epoch": 6},
              "image": {"layout": "side", "side_px": 16, "pixel_spacing_mm": 2.0, "slice_spacing_mm": 3.0,
                        "stride_mm": 3.0}}


def test_per_gland_run_trains_evaluates_and_judges(db, settings, tmp_path, training_cohort, realct, client_as):
    from adrenal_site.jobs.models import Job
    from inference.models import Image25D, Prediction
    from inference.services import runs, training
    from inference.services.evaluation import evaluate_run
    from inference.ml.metrics import Bootstrap
    from inference.ml.volume import load_nifti
    from inference.services.prediction import judge_volume
    from annotations.models import Series

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
    trained = runs.training_acquisition(run)   # the train-val scans' voxel sizes, as imported
    spacings = [s.volume.spacing_mm for s in Series.objects.filter(study__patient__dataset=ds, volume__isnull=False)
                if s.study.patient.pseudo_id not in run.split.test_patients]
    assert trained["scans"] == len(spacings) and trained["pixel_mm"][1] == pytest.approx(
        max(max(sp[0], sp[1]) for sp in spacings), abs=1e-3)
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
    # the real CT's 3 mm pixels are coarser than the generated training scans': the verdict says so
    assert f["cautions"] and f["cautions"][0].startswith("pixel spacing 3.00 mm is coarser than the model's "
                                                         "training scans"), f["cautions"]
    stored = Prediction.objects.create(series=series, run=run, **f)  # the new fields store and read back
    stored.refresh_from_db()
    assert stored.side_details == f["side_details"] and stored.evidence == f["evidence"]
    assert stored.cautions == f["cautions"]
    page = client_as("admin").get(f"/series/{series.pk}/").content.decode()
    assert 'id="verdict-cautions"' in page and html.escape(f["cautions"][0]) in page
    assert client_as("admin").get(f"/api/predictions/{stored.pk}/").json()["cautions"] == f["cautions"]
    # whether a contrast agent was given, as the training scans' DICOM headers record it (these record none): a
    # scan whose header names an agent is judged with a caution saying the model never saw one
    assert trained["contrast"] == {"recorded": 0, "none": trained["scans"], "unknown": 0}
    enhanced = Series.objects.filter(study__patient__dataset=ds).exclude(pk=series.pk).first()
    Series.objects.filter(pk=enhanced.pk).update(contrast_agent="IODINATED")
    enhanced.refresh_from_db()
    assert runs.scan_contrast(enhanced) is True and runs.scan_contrast(series) is False
    judged = judge_volume(load_nifti(realct["example_ct"]), run, contrast=runs.scan_contrast(enhanced))
    assert any("records a contrast agent and none of the model's 12 training scans" in c for c in judged.cautions)
    assert not any("contrast" in c for c in judge_volume(load_nifti(realct["example_ct"]), run).cautions)


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


def test_lesion_markers_from_the_viewer_become_image_labels(db, settings, tmp_path, training_cohort, client_as,
                                                            users):
    """Markers saved through the findings API: a marked side that its label calls abnormal trains on image
    labels (the images meeting the marker's z range abnormal, those clear of it normal) while unmarked scans
    keep their bag labels; the run records how many sides had marker labels and why the others were not used."""
    import numpy as np

    from adrenal_site.jobs.models import Job
    from annotations.models import Patient, Series
    from inference.ml.supervision import training_units
    from inference.services import runs, training
    from inference.services.gland_data import gland_samples
    from tests.plugins.training import L_BOX, R_BOX

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("marker-ds", n_patients=10, build=False)  # odd patients abnormal, lesion in the R box
    ds.members.add(users["clinician"])
    c = client_as("clinician")
    centre = {"R": [float(v) for v in (np.add(*R_BOX) / 2)], "L": [float(v) for v in (np.add(*L_BOX) / 2)]}
    series = {p.pseudo_id: Series.objects.get(study__patient=p) for p in Patient.objects.filter(dataset=ds)}
    for n in (1, 3, 5, 7, 9):  # the lesion marked in the viewer on R; all but P09 labelled "abnormal, right"
        pid = f"marker-ds-P{n:02d}"
        r = c.put(f"/api/series/{series[pid].pk}/findings/R/",
                  {"version": 0, "gland": "seen", "lesion_centre_lps": centre["R"], "lesion_diameter_mm": 14.0},
                  content_type="application/json")
        assert r.status_code == 200, r.content
        if n != 9:
            r = client_as("admin").post(f"/api/patients/{series[pid].study.patient_id}/labels/",
                                        {"value": "abnormal", "side": "R"}, content_type="application/json")
            assert r.status_code == 201 and r.json()["side"] == "R"
    r = client_as("clinician").put(f"/api/series/{series['marker-ds-P00'].pk}/findings/L/",  # on a normal scan
                                   {"version": 0, "lesion_centre_lps": centre["L"], "lesion_diameter_mm": 10.0},
                                   content_type="application/json")
    assert r.status_code == 200, r.content

    job = Job.objects.create(kind="train", params={})
    run = runs.create_run(ds, "tiny", job, overrides=GLAND_TINY | {"n_folds": 2})
    test = set(run.split.test_patients)
    trained = {f"marker-ds-P{n:02d}" for n in (1, 3, 5, 7)} - test
    markers = run.config["lesion_markers"]
    assert markers["sides"] == len(trained) == markers["scans"] and trained, (markers, test)
    assert set(markers["z_mm"]) == {str(series[p].pk) for p in trained}
    assert all(v == {"R": [[-7.0, 7.0]]} for v in markers["z_mm"].values())  # centre z 0 ± 7 mm
    why = {s.study.patient.pseudo_id: u["why"] for u in markers["unused"] for s in [Series.objects.get(pk=u["series"])]}
    for pid in {f"marker-ds-P{n:02d}" for n in (1, 3, 5, 7)} & test:
        assert why.pop(pid) == "a test patient: held out from training"
    for pid, expected in (("marker-ds-P09", "the label does not say which side is abnormal"),
                          ("marker-ds-P00", "the label calls this side normal")):
        assert why.pop(pid) == ("a test patient: held out from training" if pid in test else expected)
    assert not why
    summary = runs.run_summary(run)
    assert summary["lesion_markers"] == {k: markers[k] for k in ("sides", "scans", "unused")}

    # the folds' training data: image labels on the marked sides, bag labels everywhere else
    samples = gland_samples(ds, {p for f in run.split.folds for p in f}, run.config)
    units = training_units(samples)
    image_units = [u for u in units if u.kind == "images" and u.label == 1]
    assert sorted(u.parts[0][0].scan for u in image_units) == sorted(str(series[p].pk) for p in trained)
    for u in image_units:
        bag = u.parts[0][0]
        assert bag.side == "R" and set(np.unique(u.image_labels)) == {0.0, 1.0}
        z = bag.z_mm[u.parts[0][1]]
        assert np.all(np.abs(z[u.image_labels == 1]) <= 7.0 + 3.0 + 1e-6)  # the images meeting -7..7 mm
    unmarked = [s for s in samples if s.scan not in markers["z_mm"]]
    assert unmarked and all(b.image_labels is None for s in unmarked for b in s.bags.values())

    # and a tiny run trains on them
    training.prepare_run(run)
    for k in range(len(run.split.folds)):
        assert training.train_one_fold(run, k)["best_epoch"] is not None
    ds.members.add(users["lead"])
    text = client_as("lead").get(f"/runs/{run.pk}/").content.decode()
    assert f"{len(trained)} side{'s' if len(trained) != 1 else ''} of {len(trained)} scan" in text
    assert "the label does not say which side is abnormal" in text or "marker-ds-P09" in test


def test_a_run_deleted_while_a_fold_trains_leaves_no_weights_behind(db, settings, tmp_path, training_cohort,
                                                                    django_capture_on_commit_callbacks):
    """An admin deleting a run while one of its folds trains: the deletion removed runs/<id>/, then the fold went
    on writing its checkpoints and best.pt there, updating no row, and finished as if nothing happened; the
    weights stayed with no run holding them. The fold now stops at its next epoch naming why, and removes them."""
    from adrenal_site.jobs.models import Job
    from inference.models import FoldRun
    from inference.services import runs, training

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("gland-gone", n_patients=15, build=False)
    run = runs.create_run(ds, "tiny", Job.objects.create(kind="train", params={}), overrides=GLAND_TINY)
    training.prepare_run(run)
    folder = runs.run_dir(run)

    def admin_deletes_the_run(percent: float, message: str = "") -> None:
        if "epoch 1" in message:
            with django_capture_on_commit_callbacks(execute=True):
                type(run).objects.filter(pk=run.pk).delete()

    with pytest.raises(FoldRun.DoesNotExist, match=f"run {run.pk} was deleted while fold 0 trained"):
        training.train_one_fold(run, 0, progress=admin_deletes_the_run)
    assert not folder.exists()
