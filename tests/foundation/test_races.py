"""Two requests at the same moment (``tests.concurrency.race``, PostgreSQL): a check for what exists followed
by a write must not let both requests pass the check."""
from __future__ import annotations

import pytest

from adrenal_site.jobs.models import Job
from tests.concurrency import needs_row_locks, race
from tests.factories import make_dataset, make_run, make_series, make_split

pytestmark = [needs_row_locks]


@pytest.mark.django_db(transaction=True)
def test_two_promotes_of_one_dataset_leave_one_promoted_run():
    from inference.models import TrainingRun
    from inference.services.runs import promote

    ds = make_dataset("race-promote")
    split = make_split(ds)
    a, b = (make_run(ds, split, operating_value=0.5, objective="accuracy") for _ in range(2))
    results = race(lambda: promote(a), lambda: promote(b))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert TrainingRun.objects.filter(dataset=ds, promoted=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_judge_clicks_queue_one_job(monkeypatch):
    from inference import tasks

    monkeypatch.setattr(tasks, "send_job", lambda job: None, raising=False)
    monkeypatch.setattr("adrenal_site.jobs.runner.send_job", lambda job: None)
    ds = make_dataset("race-judge")
    make_run(ds, operating_value=0.5, objective="accuracy", promoted=True)
    results = race(lambda: tasks.start_judge_dataset(ds), lambda: tasks.start_judge_dataset(ds))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Job.objects.filter(kind="judge_dataset").count() == 1
    assert results[0].pk == results[1].pk


@pytest.mark.django_db(transaction=True)
def test_two_label_edits_leave_one_current_label():
    from annotations.models import Label

    ds = make_dataset("race-label")
    patient = make_series(ds, "P001").study.patient
    Label.assign(patient, "normal", Label.Source.UI)
    race(lambda: Label.assign(patient, "abnormal", Label.Source.UI, side="R"),
         lambda: Label.assign(patient, "abnormal", Label.Source.UI, side="L"))
    assert Label.objects.filter(patient=patient, series=None, is_current=True).count() == 1


def _scan_with_volume(ds):
    from annotations.models import Volume

    series = make_series(ds, "P001")
    Volume.objects.create(series=series, file="volumes/none.nii.gz", shape=[20, 20, 20], spacing_mm=[1.0, 1.0, 1.0],
                          affine=[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    return series


@pytest.mark.django_db(transaction=True)
def test_two_first_box_saves_give_one_version_and_one_conflict():
    """Both expect no box yet (version 0): one creates it, the other is told of the conflict (the 409), not a
    database error (a 500)."""
    from annotations.models import CropBox, CropBoxVersion
    from annotations.services.boxes import VersionConflict, save_box

    series = _scan_with_volume(make_dataset("race-box"))
    results = race(*(lambda lo=lo: save_box(series, "R", [lo, lo, lo], [lo + 5, lo + 5, lo + 5],
                                             status=CropBox.Status.CONFIRMED, expected_version=0) for lo in (2, 4)))
    assert sorted(type(r).__name__ for r in results) == ["CropBox", "VersionConflict"], results
    assert any(isinstance(r, VersionConflict) for r in results)
    assert CropBoxVersion.objects.filter(box__series=series).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_first_finding_saves_give_one_version_and_one_conflict():
    from annotations.models import SideFindingVersion
    from annotations.services.findings import save_finding

    series = _scan_with_volume(make_dataset("race-finding"))
    results = race(*(lambda c=c: save_finding(series, "L", comment=c, expected_version=0) for c in ("a", "b")))
    assert sorted(type(r).__name__ for r in results) == ["SideFinding", "VersionConflict"], results
    assert SideFindingVersion.objects.filter(finding__series=series).count() == 1
