"""The dataset's split grows with the dataset: patients labelled after a run join the next run's split version,
nobody already split moves (a test patient never trains), and earlier runs keep the version they used."""
from __future__ import annotations

from pathlib import Path

from tests.plugins.training import add_patients

GLAND = {"n_folds": 3, "supervision": "mil", "aggregator": "sides",
         "image": {"layout": "side", "side_px": 16, "pixel_spacing_mm": 2.0, "slice_spacing_mm": 3.0,
                   "stride_mm": 3.0}}


def _run(ds, overrides=GLAND):
    from adrenal_site.jobs.models import Job
    from inference.services import runs

    return runs.create_run(ds, "tiny", Job.objects.create(kind="train", params={}), overrides=overrides)


def test_patients_labelled_after_a_run_join_the_next_runs_split(db, settings, tmp_path, training_cohort, client_as,
                                                                 users):
    from inference.services.runs import run_summary

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("grow-ds", n_patients=10, build=False)
    first = _run(ds)
    v1 = first.split
    assert v1.version == 1 and v1.n_patients == 10 and len(v1.test_patients) == 2
    assert _run(ds).split_id == v1.pk  # nothing new: the same version

    add_patients(ds, range(10, 20), Path(tmp_path))
    second = _run(ds)
    v2 = second.split
    assert v2.version == 2 and v2.n_patients == 20 and v2.seed == v1.seed and v2.test_fraction == v1.test_fraction
    assert set(v1.test_patients) <= set(v2.test_patients) and len(v2.test_patients) == 4  # 20% of each label
    assert all(set(old) <= set(new) for old, new in zip(v1.folds, v2.folds))
    new_test = [p for p in v2.test_patients if p not in v1.test_patients]
    assert sorted(int(p[-2:]) % 2 for p in new_test) == [0, 1]  # stratified: one normal, one abnormal
    first.refresh_from_db()
    assert first.split_id == v1.pk and run_summary(first)["split"]["version"] == 1
    assert run_summary(second)["split"]["version"] == 2

    # a joined run (2.5D images) uses the same versions: nobody new, nothing made
    assert _run(ds, {"n_folds": 3, "image": {"side_px": 16, "pixel_spacing_mm": 2.0}}).split_id == v2.pk
    ds.members.add(users["lead"])
    client = client_as("lead")
    page = client.get(f"/runs/{second.pk}/").content.decode()
    assert "Split version 2 of this dataset (20 patients" in page
    doc = client.get(f"/api/runs/{second.pk}/").json()
    assert doc["split"]["version"] == 2 and sorted(doc["split"]["test_patients"]) == sorted(v2.test_patients)


def test_extend_split_keeps_everyone_and_stratifies_the_new():
    from inference.ml.splits import extend_split, make_split

    labels = {f"P{i:03d}": int(i % 3 == 0) for i in range(30)}
    s = make_split(labels, n_folds=5, seed=3)
    more = {**labels, **{f"Q{i:03d}": int(i % 3 == 0) for i in range(30)}}
    t = extend_split(s, more, test_fraction=0.2, seed=3)
    assert t == extend_split(s, more, test_fraction=0.2, seed=3)
    assert set(s.test_patients) <= set(t.test_patients)
    assert all(set(a) <= set(b) for a, b in zip(s.folds, t.folds))
    placed = t.test_patients + t.trainval()
    assert sorted(placed) == sorted(more) and len(placed) == len(set(placed))
    for label in (0, 1):
        n = sum(v == label for v in more.values())
        assert sum(more[p] == label for p in t.test_patients) == round(0.2 * n)
        per_fold = [sum(more[p] == label for p in f) for f in t.folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert extend_split(s, labels, seed=3) == s  # nothing new: the same split


def test_a_run_names_the_labelled_scans_it_left_out(db, settings, tmp_path, training_cohort, client_as, users):
    from annotations.models import CropBox, Series
    from inference.services.runs import run_summary

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("left-out-ds", n_patients=10, build=False)
    boxless = Series.objects.get(study__patient__pseudo_id="left-out-ds-P03")
    CropBox.objects.filter(series=boxless).delete()
    run = _run(ds)
    assert all("left-out-ds-P03" not in f for f in run.split.folds + [run.split.test_patients])
    out = run_summary(run)["left_out"]
    assert out == [{"series": boxless.pk, "patient": "left-out-ds-P03",
                    "why": "no crop box on either side (proposals pending, failed or not covered)"}]
    ds.members.add(users["lead"])
    page = client_as("lead").get(f"/runs/{run.pk}/").content.decode()
    assert "Left out of this run: 1 labelled scan" in page
    # named by the scan's id and linked to it: "series 4" read as the DICOM series number every scan shows
    assert f'left-out-ds-P03 <a href="/series/{boxless.pk}/">scan #{boxless.pk}</a>' in page


def test_an_admin_deletes_a_dataset_with_runs_but_no_split_goes_alone(db, client_as):
    """Runs hold their split (a split a run used cannot be deleted on its own), yet deleting the dataset in the
    admin takes its runs and splits with it, after the admin's confirmation page lists them."""
    import pytest
    from django.db.models import RestrictedError

    from annotations.models import Dataset
    from inference.models import DatasetSplit, TrainingRun
    from tests.factories import make_dataset, make_run, make_split

    ds = make_dataset("doomed-ds")
    split = make_split(ds, folds=[[], []])
    run = make_run(ds, split)
    with pytest.raises(RestrictedError):
        split.delete()
    admin = client_as("admin")
    page = admin.get(f"/admin/annotations/dataset/{ds.pk}/delete/").content.decode()
    assert "Are you sure" in page and f"run {run.pk}" in page
    assert admin.post(f"/admin/annotations/dataset/{ds.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Dataset.objects.filter(pk=ds.pk).exists()
    assert not TrainingRun.objects.filter(pk=run.pk).exists() and not DatasetSplit.objects.filter(pk=split.pk).exists()


def test_a_model_is_not_deleted_from_under_verdicts_that_stay(db, client_as):
    """Deleting a dataset takes the verdicts on its own scans with it, but not those its model gave on scans of
    other datasets (submitted studies): the admin refuses, naming them, and nothing is deleted."""
    from annotations.models import Dataset
    from inference.models import Prediction, TrainingRun
    from tests.factories import make_dataset, make_run, make_series, make_split

    ds = make_dataset("model-ds")
    run = make_run(ds, make_split(ds, folds=[[], []]))
    own = Prediction.objects.create(series=make_series(ds, "P1"), run=run, verdict="normal")
    other = Prediction.objects.create(series=make_series(make_dataset("Submitted studies"), "S1"), run=run,
                                      verdict="abnormal")
    admin = client_as("admin")
    page = admin.get(f"/admin/annotations/dataset/{ds.pk}/delete/").content.decode()
    assert "protected" in page and "Are you sure" not in page
    admin.post(f"/admin/annotations/dataset/{ds.pk}/delete/", {"post": "yes"})
    assert Dataset.objects.filter(pk=ds.pk).exists() and Prediction.objects.filter(pk__in=[own.pk, other.pk]).count() == 2
    other.delete()
    assert admin.post(f"/admin/annotations/dataset/{ds.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not TrainingRun.objects.filter(pk=run.pk).exists() and not Prediction.objects.filter(pk=own.pk).exists()


def test_what_an_admin_deletes_takes_its_files_with_it(ct_series, settings, client_as, tmp_path):
    """Deleting a patient in the admin removes its CT from disk (the stored volume, the viewer's slabs, its 2.5D
    images, its verdicts' evidence thumbnails), and deleting a run its weights folder; another patient's files
    stay. Before, the rows went and every file stayed under MEDIA_ROOT (the demo's deleted patient's volume,
    images25d/16/ and viewer/volume-16-… were all still there)."""
    from annotations.services.volume_cache import prepare_viewer_data
    from inference.models import Image25D, Prediction
    from tests.factories import make_run, make_split

    settings.MEDIA_ROOT = root = tmp_path / "media"
    gone, kept = ct_series(patient="P-gone"), ct_series(patient="P-kept")
    ds = gone.study.patient.dataset
    for s in (gone, kept):
        prepare_viewer_data(s.volume)
        folder = root / "images25d" / str(s.pk) / "k"
        folder.mkdir(parents=True)
        (folder / "0000.npy").write_bytes(b"npy")
        (folder / "0000.png").write_bytes(b"png")
        Image25D.objects.create(series=s, slice_index=0, z_mm=0.0, boxes_version="k",
                                file=f"images25d/{s.pk}/k/0000.npy", thumbnail=f"images25d/{s.pk}/k/0000.png")
    run = make_run(ds, make_split(ds, folds=[[], []]))
    (root / run.artifacts_dir / "fold0").mkdir(parents=True)
    (root / run.artifacts_dir / "fold0" / "best.pt").write_bytes(b"weights")
    verdict = Prediction.objects.create(series=gone, run=run, verdict="normal")
    (root / "evidence" / str(verdict.pk)).mkdir(parents=True)
    (root / "evidence" / str(verdict.pk) / "0-96.png").write_bytes(b"png")
    files = {s.pk: [root / s.volume.file.name, root / "images25d" / str(s.pk) / "k" / "0000.npy",
                    root / "images25d" / str(s.pk) / "k" / "0000.png"] for s in (gone, kept)}
    viewer = {s.pk: list((root / "viewer").glob(f"volume-{s.volume.pk}-*")) for s in (gone, kept)}
    assert all(p.exists() for ps in files.values() for p in ps) and viewer[gone.pk] and viewer[kept.pk]

    admin = client_as("admin")
    patient = gone.study.patient
    assert admin.post(f"/admin/annotations/patient/{patient.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not any(p.exists() for p in files[gone.pk] + viewer[gone.pk])
    assert not (root / "evidence" / str(verdict.pk)).exists()
    assert all(p.exists() for p in files[kept.pk] + viewer[kept.pk])  # another patient's stay
    assert (root / run.artifacts_dir / "fold0" / "best.pt").exists()  # the run is not the patient's
    assert admin.post(f"/admin/inference/trainingrun/{run.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not (root / run.artifacts_dir).exists()


def test_the_admin_does_not_delete_a_runs_job_from_under_it(db, client_as):
    """A run's state is its train job's: deleting that job in the admin's job list turned a finished, promoted run
    into a 'queued' one that every verdict refused ('run N is queued; only a finished run gives verdicts') and
    that could not be cancelled. The admin refuses, naming the run; once the run is deleted its jobs may go."""
    from adrenal_site.jobs.models import Job
    from inference.models import TrainingRun
    from inference.services.runs import resolve_run
    from tests.factories import make_dataset, make_run, make_split

    ds = make_dataset("kept-jobs-ds")
    run = make_run(ds, make_split(ds, folds=[[], []]), operating_value=0.5, promoted=True)
    fold_job = run.folds.first().job
    fold_job.parent = run.job
    fold_job.save(update_fields=["parent"])
    admin = client_as("admin")
    for job in (run.job, fold_job):
        page = admin.get(f"/admin/jobs/job/{job.pk}/delete/").content.decode()
        assert "protected" in page and "Are you sure" not in page, job
        admin.post(f"/admin/jobs/job/{job.pk}/delete/", {"post": "yes"})
        assert Job.objects.filter(pk=job.pk).exists()
    assert resolve_run(None, ds).pk == run.pk and TrainingRun.objects.get(pk=run.pk).status == "succeeded"
    assert admin.post(f"/admin/inference/trainingrun/{run.pk}/delete/", {"post": "yes"}).status_code == 302
    assert admin.post(f"/admin/jobs/job/{run.job_id}/delete/", {"post": "yes"}).status_code == 302
    assert not Job.objects.filter(pk__in=[run.job_id, fold_job.pk]).exists()
