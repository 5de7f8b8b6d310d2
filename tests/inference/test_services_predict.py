"""Verdicts for new studies: the real TotalSegmentator CT gets a verdict; a chest-only scan and an MR do not."""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.slow


@pytest.fixture
def model_run(db, settings, tmp_path):
    """A finished, evaluated 2-fold run with random-init EfficientNet-B0 weights (small crops: quick on CPU)."""
    import torch

    from inference.ml.networks import build_model
    from tests.factories import make_dataset, make_run, make_split

    settings.MEDIA_ROOT = tmp_path / "media"
    ds = make_dataset("predict-ds")
    config = {"backbone": "efficientnet_b0", "side_px": 48, "slice_mm": 6.0}
    run = make_run(ds, make_split(ds, folds=[[], []]), config=config, operating_value=0.5, objective="accuracy",
                   promoted=True, version=1, fold_weights=[f"runs/weights/fold{k}/best.pt" for k in range(2)])
    torch.manual_seed(0)
    for fold in run.folds.all():
        path = Path(settings.MEDIA_ROOT) / fold.weights
        path.parent.mkdir(parents=True)
        torch.save(build_model("efficientnet_b0")[0].state_dict(), path)
    return run


def chest_only(realct, tmp_path) -> Path:
    """A chest-only scan (synthetic): it does not reach the adrenal glands. (The top slices of the real CT served
    before, but they hold the top of its left gland, which the atlas proposer rightly boxes.)"""
    from inference.ml.volume import save_nifti
    from synthetic import make_patient

    volume = make_patient(9, abnormal=False, profile="tiny", coverage="chest_only").volume
    return save_nifti(volume, tmp_path / "chest_only.nii.gz")


def test_predict_command_on_the_real_ct(model_run, realct):
    out = StringIO()
    call_command("predict", str(realct["example_ct"]), "--run", str(model_run.pk), "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert set(doc) >= {"series_uid", "probability", "verdict", "operating_value", "sides", "flagged_slices_mm"}
    assert doc["verdict"] in ("normal", "abnormal") and "reason" not in doc
    assert 0.0 <= doc["probability"] <= 1.0 and doc["operating_value"] == 0.5
    assert set(doc["sides"]) == {"R", "L"} and all(0.0 <= v <= 1.0 for v in doc["sides"].values())
    # flagged slices lie in the adrenal region of this CT (its glands are at z 379-418 mm)
    assert all(330 <= z <= 430 for z in doc["flagged_slices_mm"])


def test_predict_command_refuses_to_guess(model_run, realct, tmp_path):
    out = StringIO()
    call_command("predict", str(chest_only(realct, tmp_path)), "--run", str(model_run.pk), "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert doc["verdict"] == "not assessable" and "not covered" in doc["reason"]
    assert doc["probability"] is None and doc["flagged_slices_mm"] == []
    out = StringIO()
    mr = Path(realct["example_ct"]).parent / "example_mr_sm.nii.gz"
    call_command("predict", str(mr), "--run", str(model_run.pk), "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert doc["verdict"] == "not assessable" and "not CT" in doc["reason"]
    with pytest.raises(CommandError, match="does not exist"):
        call_command("predict", str(tmp_path / "nothing"), "--run", str(model_run.pk))
    model_run.operating_value = None
    model_run.save()
    with pytest.raises(CommandError, match="evaluate it first"):
        call_command("predict", str(mr), "--run", str(model_run.pk))


def _imported_series(run, path: Path, settings, modality: str = "CT"):
    """A series with its HU volume stored as the import area stores it."""
    import shutil

    from annotations.models import Patient, Series, Study, Volume
    from inference.ml.volume import load_nifti

    patient = Patient.objects.create(dataset=run.dataset, pseudo_id=f"NEW{Patient.objects.count()}")
    study = Study.objects.create(patient=patient, study_uid=f"9.9.{patient.pk}")
    series = Series.objects.create(study=study, series_uid=f"9.9.{patient.pk}.1", modality=modality)
    rel = f"volumes/{series.pk}.nii.gz"
    (Path(settings.MEDIA_ROOT) / "volumes").mkdir(parents=True, exist_ok=True)
    shutil.copy(path, Path(settings.MEDIA_ROOT) / rel)
    v = load_nifti(path)
    Volume.objects.create(series=series, file=rel, shape=list(v.shape), spacing_mm=v.spacing.tolist(),
                          affine=v.affine.tolist())
    return series


def test_predict_job_stores_an_idempotent_prediction(model_run, realct, settings, tmp_path):
    from adrenal_site.jobs.models import Job
    from inference.models import Prediction
    from inference.tasks import predict_job

    series = _imported_series(model_run, Path(realct["example_ct"]), settings)
    job = Job.objects.create(kind="predict", task_name=predict_job.name, queue="gpu",
                             params={"series_id": series.pk, "run_id": model_run.pk})
    first = predict_job.job_fn(job, **job.params)
    again = predict_job.job_fn(job, **job.params)  # a re-delivered task
    assert first["prediction"] == again["prediction"]
    p = Prediction.objects.get(job=job)
    assert Prediction.objects.filter(series=series).count() == 1
    assert p.verdict in ("normal", "abnormal") and p.operating_value == 0.5
    assert p.slice_scores and len(p.slice_scores[0]) == 2 and set(p.sides) == {"R", "L"}
    assert (p.fraction >= 0.5) == (p.verdict == "abnormal")

    chest = _imported_series(model_run, chest_only(realct, tmp_path), settings)
    job2 = Job.objects.create(kind="predict", task_name=predict_job.name, queue="gpu",
                              params={"series_id": chest.pk, "run_id": model_run.pk})
    predict_job.job_fn(job2, **job2.params)
    p2 = Prediction.objects.get(job=job2)
    assert p2.verdict == "not_assessable" and "not covered" in p2.reason and p2.probability is None


def test_submit_from_the_api(model_run, realct, settings, client_as, users, django_capture_on_commit_callbacks):
    from adrenal_site.jobs.models import Job

    series = _imported_series(model_run, Path(realct["example_ct_sm"]), settings)
    c = client_as("clinician")
    assert c.post("/api/predictions/", {"series": series.pk}, content_type="application/json").status_code == 400
    model_run.dataset.members.add(users["clinician"])
    with django_capture_on_commit_callbacks(execute=False):
        r = c.post("/api/predictions/", {"series": series.pk}, content_type="application/json")
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job"])
    assert job.queue == "gpu" and job.params == {"series_id": series.pk, "run_id": model_run.pk}
    assert c.get("/api/predictions/", {"series": series.pk}).json() == []


def test_upload_a_nifti_for_a_verdict(model_run, realct, settings, client_as, users, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from adrenal_site.jobs.models import Job
    from inference.models import Prediction
    from inference.tasks import predict_job

    model_run.dataset.members.add(users["clinician"])
    c = client_as("clinician")
    data = Path(realct["example_ct_sm"]).read_bytes()
    with django_capture_on_commit_callbacks(execute=False):
        r = c.post("/api/predictions/", {"file": SimpleUploadedFile("new_scan.nii.gz", data),
                                         "dataset": model_run.dataset.pk})
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job"])
    assert job.queue == "gpu" and Path(job.params["path"]).name == "new_scan.nii.gz"
    doc = predict_job.job_fn(job, **job.params)
    p = Prediction.objects.get(job=job)
    assert doc["prediction"] == p.pk and p.series.study.patient.dataset == model_run.dataset
    assert p.verdict in ("normal", "abnormal", "not_assessable")
    assert c.get("/api/predictions/", {"series": p.series_id}).json()[0]["id"] == p.pk


def test_a_prediction_upload_that_is_no_scan_is_refused_before_anything_is_queued(model_run, client_as, users,
                                                                                 settings):
    """The same checks as the store's upload: a file that is neither a zip nor a NIfTI, a NIfTI without a NIfTI
    header, a corrupt gzip, a zip that is no zip: 400 naming the file and the problem, no job, nothing kept."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from adrenal_site.jobs.models import Job

    model_run.dataset.members.add(users["clinician"])
    c = client_as("clinician")
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    before = sorted(uploads.rglob("*")) if uploads.exists() else []
    for name, data, message in [("notes.txt", b"hello", "upload a .zip of a DICOM series or a NIfTI scan"),
                                ("a.nii", b"ab", "not a NIfTI file"),
                                ("fake.nii.gz", b"\x1f\x8bnot really gzip", "not a gzipped NIfTI"),
                                ("scan.nii", b"\x00" * 400, "not a NIfTI file"),
                                ("study.zip", b"PK not a zip", "not a zip")]:
        r = c.post("/api/predictions/", {"file": SimpleUploadedFile(name, data), "dataset": model_run.dataset.pk})
        assert r.status_code == 400 and message in str(r.json()["file"]), (name, r.content)
        page = c.post("/verdicts/", {"file": SimpleUploadedFile(name, data), "dataset": model_run.dataset.pk})
        assert page.status_code == 400 and message in page.content.decode(), name
    assert not Job.objects.filter(kind="predict").exists()
    assert (sorted(uploads.rglob("*")) if uploads.exists() else []) == before


def test_files_submitted_for_a_verdict_are_a_patient_each_whatever_their_name(db, realct, tmp_path):
    """Two users' different ``ct.nii.gz`` are two patients of "Submitted studies" (the name says nothing about
    the patient there); the same file again is the same scan."""
    import nibabel as nib
    import numpy as np

    from inference.services.prediction import import_for_prediction

    img = nib.load(realct["example_ct_sm"])
    series = []
    for n in range(2):
        folder = tmp_path / f"upload{n}"
        folder.mkdir()
        data = np.asarray(img.dataobj).copy()
        data[0, 0, 0] = n
        nib.save(nib.Nifti1Image(data, img.affine, img.header), folder / "ct.nii.gz")
        s, reason = import_for_prediction(folder, source="ct.nii.gz")
        assert s is not None, reason
        series.append(s)
    assert series[0].study.patient_id != series[1].study.patient_id
    again, _ = import_for_prediction(tmp_path / "upload1", source="ct.nii.gz")
    assert again.pk == series[1].pk


def test_a_verdict_on_a_training_patient_says_it_is_in_sample(model_run, realct, settings, client_as, users):
    """A lead who judges a whole dataset gets verdicts on the model's own training patients: each carries a
    caution saying so (in the pages, the API and the SR), so nobody reads them as the model's accuracy."""
    from inference.services.prediction import predict_series

    trained = _imported_series(model_run, Path(realct["example_ct"]), settings)
    held_out = _imported_series(model_run, Path(realct["example_ct"]), settings)
    split = model_run.split
    split.folds, split.test_patients = [[trained.study.patient.pseudo_id], []], [held_out.study.patient.pseudo_id]
    split.save()
    model_run.refresh_from_db()
    p = predict_series(trained, model_run)
    assert p.verdict in ("normal", "abnormal")
    assert [c for c in p.cautions if c.startswith("in-sample: patient NEW0 was one of the 1 patients model run")]
    assert not [c for c in predict_series(held_out, model_run).cautions if c.startswith("in-sample")]
    model_run.dataset.members.add(users["clinician"])
    assert any(c.startswith("in-sample") for c in client_as("clinician").get(f"/api/predictions/{p.pk}/").json()["cautions"])


def test_a_training_patients_study_submitted_again_is_in_sample(model_run, synthetic_cohort):
    """The same DICOM series `predict` (or an upload, or the PACS) brings into another dataset is the same patient
    (the same keyed pseudonym): its verdict was given with no in-sample caution because the patient row was in
    "Submitted studies", not the run's dataset. It now carries it; another patient's does not."""
    from annotations.services.importer import import_path
    from inference.services.prediction import predict_path

    folders = sorted(p for p in Path(synthetic_cohort["path"]).glob("*/*/DICOM/*/*/*/*") if "_AX_" in p.name)
    trained_folder, other_folder = folders[0], next(f for f in folders if f.parts[-6] != folders[0].parts[-6])
    import_path(model_run.dataset, trained_folder)
    trained = model_run.dataset.patients.get()
    split = model_run.split
    split.folds = [[trained.pseudo_id], []]
    split.save()
    model_run.refresh_from_db()
    doc = predict_path(trained_folder, model_run)
    assert doc["verdict"] in ("normal", "abnormal"), doc
    assert any(c.startswith(f"in-sample: patient {trained.pseudo_id} was one of") for c in doc.get("cautions", [])), doc
    other = predict_path(other_folder, model_run)
    assert not any(c.startswith("in-sample") for c in other.get("cautions", [])), other


def test_an_upload_into_a_dataset_is_the_datasets_not_its_submitters(model_run, synthetic_cohort, django_user_model):
    """A clinician who uploaded a copy of one of their dataset's series into that dataset was recorded as its
    submitter: removed from the dataset, they still opened that scan (others' boxes and findings) and the
    verdict they had asked for there. An upload into a dataset is now the dataset's; one to "Submitted studies"
    still opens to its submitter whatever datasets they are in."""
    from annotations.models import Series
    from annotations.services.importer import import_path
    from inference.models import Prediction
    from inference.services.prediction import predict_path

    folder = next(p for p in sorted(Path(synthetic_cohort["path"]).glob("*/*/DICOM/*/*/*/*")) if "_AX_" in p.name)
    import_path(model_run.dataset, folder)
    clinician = django_user_model.objects.create_user("uploader")
    model_run.dataset.members.add(clinician)
    doc = predict_path(folder, model_run, user=clinician, dataset=model_run.dataset)
    series = Series.objects.get(pk=doc["series"])
    assert series.study.patient.dataset_id == model_run.dataset_id  # the dataset's own scan
    assert Series.objects.visible_to(clinician).filter(pk=series.pk).exists()
    assert Prediction.objects.visible_to(clinician).filter(pk=doc["prediction"]).exists()
    model_run.dataset.members.remove(clinician)
    assert not Series.objects.visible_to(clinician).filter(pk=series.pk).exists()
    assert not Prediction.objects.visible_to(clinician).filter(pk=doc["prediction"]).exists()
    submitted = predict_path(folder, model_run, user=clinician)  # to "Submitted studies": theirs
    assert Series.objects.visible_to(clinician).filter(pk=submitted["series"]).exists()
    assert Prediction.objects.visible_to(clinician).filter(pk=submitted["prediction"]).exists()


def test_an_upload_of_several_studies_is_not_judged_as_one_and_a_study_gives_its_thinnest_scan(model_run, realct,
                                                                                              tmp_path):
    """An upload for a verdict holding the real TotalSegmentator DICOM series and its NIfTI CT (two studies) got
    one verdict, on whichever scan the import listed first, with nothing said of the other. It is not judged,
    naming the studies; an upload of one study exported whole (a localizer, a 2 mm and a 5 mm series) is judged on
    its thinnest soft-tissue series, the store's 'thinnest' rule, whatever order the import met them in."""
    import shutil

    from annotations.models import Dataset
    from inference.services.prediction import import_for_prediction, predict_path
    from tests.plugins.store import make_store_cohort

    both = tmp_path / "both"
    shutil.copytree(realct["example_ct_dicom"], both / "dicom")
    shutil.copy(realct["example_ct_sm"], both / "ct.nii.gz")
    doc = predict_path(both, model_run, source="both.zip")
    assert doc["verdict"] == "not assessable" and doc["probability"] is None
    assert doc["reason"].startswith("not judged: the upload holds 2 scans of 2 studies (patients P"), doc["reason"]
    assert doc["reason"].endswith("a verdict is for one study: upload each on its own"), doc["reason"]

    make_store_cohort(tmp_path / "study", patients=1)
    series, reason = import_for_prediction(tmp_path / "study", Dataset.objects.create(name="one study"))
    assert reason == "" and series.series_description == "Abdomen 2mm"
