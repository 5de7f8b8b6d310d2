"""The `make run` demo wiring: imports queue proposals, the demo pipeline proposes, builds 2.5D images and
starts a run marked auto_promote, and that run is promoted once its evaluation is stored."""
from __future__ import annotations

import pytest

from adrenal_site.jobs.models import Job


def run_job(fn, job_id: int) -> None:
    """Run a job's function in this test's transaction (the runner closes connections between jobs)."""
    job = Job.objects.get(pk=job_id)
    job.result = fn(job, **job.params) or {}
    job.status = "succeeded"
    job.save()


@pytest.fixture
def imported_demo(db, settings, tmp_path, synthetic_cohort):
    from annotations.models import Dataset
    from annotations.tasks import import_studies, start_import

    settings.MEDIA_ROOT = tmp_path / "media"
    dataset = Dataset.objects.create(name="Demo")
    job = start_import(dataset, str(synthetic_cohort["path"]), send=False)
    run_job(import_studies.job_fn, job.pk)
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    return dataset


def test_import_queues_proposals_for_the_imported_scans(imported_demo, django_capture_on_commit_callbacks):
    from annotations.models import Series

    jobs = Job.objects.filter(kind="propose_crops")
    assert jobs.count() == 1
    scans = set(Series.objects.filter(study__patient__dataset=imported_demo, is_scan=True).values_list("pk", flat=True))
    assert set(jobs.get().params["series_ids"]) == scans and scans


def test_demo_pipeline_proposes_builds_images_and_starts_an_auto_promoted_run(imported_demo):
    from annotations.models import Series
    from inference.models import Image25D, TrainingRun
    from inference.tasks import demo_pipeline

    KIND = demo_pipeline.kind
    job = Job.objects.create(kind=KIND, task_name=demo_pipeline.name, params={"dataset_id": imported_demo.pk,
                                                                              "preset": "tiny",
                                                                              "overrides": {"n_folds": 2}})
    run_job(demo_pipeline.job_fn, job.pk)
    job.refresh_from_db()
    scans = Series.objects.filter(study__patient__dataset=imported_demo, is_scan=True)
    proposed = scans.filter(box_status="proposed")
    assert proposed.count() >= 1 and set(scans.values_list("box_status", flat=True)) <= {"proposed", "not_covered"}
    assert Image25D.objects.filter(series__in=proposed).count() >= 3 * proposed.count()
    run = TrainingRun.objects.get(dataset=imported_demo)
    assert run.config["auto_promote"] is True and run.preset == "tiny" and job.result["run"] == run.pk
    # idempotent: a re-delivered pipeline starts no second run
    again = Job.objects.create(kind=KIND, task_name=demo_pipeline.name, params=job.params)
    run_job(demo_pipeline.job_fn, again.pk)
    assert TrainingRun.objects.filter(dataset=imported_demo).count() == 1


def test_auto_promote_after_evaluation(make_evaluated_run):
    from inference.models import TrainingRun
    from inference.tasks import evaluate_run_job

    run, _ = make_evaluated_run(evaluate=False)
    run.config["auto_promote"] = True
    run.save()
    job = Job.objects.create(kind="evaluate", task_name=evaluate_run_job.name, params={"run_id": run.pk})
    run_job(evaluate_run_job.job_fn, job.pk)
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    assert TrainingRun.objects.get(pk=run.pk).promoted
    other, _ = make_evaluated_run(evaluate=False, name="eval-ds")  # same dataset, already has a promoted run
    job = Job.objects.create(kind="evaluate", task_name=evaluate_run_job.name, params={"run_id": other.pk})
    run_job(evaluate_run_job.job_fn, job.pk)
    assert not TrainingRun.objects.get(pk=other.pk).promoted


def test_demo_labels_carry_each_patients_abnormal_glands(imported_demo, synthetic_cohort, tmp_path):
    import shutil

    from annotations.models import Label
    from annotations.services.importer import apply_labels_csv
    from inference.services.demo import labels_csv

    shutil.copy(synthetic_cohort["csv"], tmp_path / "ground_truth.csv")
    path = labels_csv(tmp_path)
    truth: dict[str, set] = {}
    value = {}
    for row in synthetic_cohort["rows"]:
        truth.setdefault(row.patient, set()).update(les.side for les in row.lesions)
        value[row.patient] = row.label
    assert apply_labels_csv(imported_demo, path)["applied"] == len(truth)
    got = {lab.patient_id: (lab.value, lab.side) for lab in Label.objects.filter(patient__dataset=imported_demo,
                                                                                 is_current=True)}
    assert len(got) == len(truth)
    expected = sorted((value[p], "".join(s for s in "RL" if s in sides)) if value[p] == "abnormal" else ("normal", "none")
                      for p, sides in truth.items())
    assert any(v == ("abnormal", "R") or v == ("abnormal", "L") for v in expected)
    assert sorted(got.values()) == expected


@pytest.mark.parametrize("value", ["6", "abc", "-3", "100000"])
def test_a_demo_size_its_run_cannot_split_is_refused_before_anything_is_stored(db, monkeypatch, value):
    """``ADRENAL_DEMO_PATIENTS=6`` left a 5-fold run with an empty fold: the demo pipeline failed in the
    background with the reason in the worker's log only. ``load_demo`` (make run) now stops at once naming the
    setting and its range, and stores nothing."""
    from django.core.management import CommandError, call_command

    from annotations.models import Dataset

    monkeypatch.setenv("ADRENAL_DEMO_PATIENTS", value)
    with pytest.raises(CommandError, match=r"ADRENAL_DEMO_PATIENTS must be a whole number from 10 to 500"):
        call_command("load_demo")
    assert not Dataset.objects.exists()


def test_a_demo_cohort_of_another_size_is_generated_again(settings, tmp_path):
    """A demo cohort left in DATA_DIR by an earlier `make run` was imported whatever ADRENAL_DEMO_PATIENTS now
    asked for ("the synthetic cohort (40 patients) ... found", then 16 imported). The folder is made again when
    its patient count is not the one asked for, with labels.csv to match; the same count reuses it."""
    from inference.services.demo import ensure_cohort, labels_csv
    from synthetic import read_ground_truth

    settings.DATA_DIR = tmp_path
    out, generated = ensure_cohort(4, profile="tiny")
    assert generated and out == tmp_path / "demo-cohort"
    labels_csv(out)
    assert ensure_cohort(4, profile="tiny") == (out, False)
    out, generated = ensure_cohort(5, profile="tiny")
    assert generated and len({r.patient for r in read_ground_truth(out / "ground_truth.csv")}) == 5
    assert len(labels_csv(out).read_text().splitlines()) == 1 + 5


def test_setup_site_demo_checks_the_demo_size_before_making_accounts(db, settings, monkeypatch):
    """`make run` with ADRENAL_DEMO_PATIENTS=5 made the demo accounts, printed their passwords, then stopped on the
    setting in a traceback; the run after the fix said only "demo accounts exist". The setting is now checked
    before any account is made."""
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    settings.DEBUG = True
    monkeypatch.setenv("ADRENAL_DEMO_PATIENTS", "5")
    with pytest.raises(CommandError, match=r"ADRENAL_DEMO_PATIENTS must be a whole number from 10 to 500"):
        call_command("setup_site", "--demo")
    assert not get_user_model().objects.exists()
