"""What must be one stays one, whatever code writes it: one current label per patient (and per series), one
promoted run per dataset. ``Label.assign`` and ``promote`` serialise their own writes (tests/foundation/
test_races.py); the database's constraints hold the rest: the admin's forms say why, other writes fail."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from annotations.models import Label
from inference.models import TrainingRun
from inference.services.runs import promote
from tests.factories import make_dataset, make_run, make_series, make_split

pytestmark = pytest.mark.django_db


def test_a_second_current_label_is_refused_and_the_admin_says_why(client_as):
    series = make_series(make_dataset("labels"), "P1")
    patient = series.study.patient
    Label.assign(patient, "normal", "ui")
    Label.assign(patient, "abnormal", "ui", side="R")  # assign keeps the earlier one as history
    assert list(Label.objects.filter(patient=patient).values_list("value", "is_current")) == [
        ("abnormal", True), ("normal", False)]
    with pytest.raises(IntegrityError), transaction.atomic():
        Label.objects.create(patient=patient, value="normal", source="ui")
    Label.assign(patient, "abnormal", "ui", series=series, side="L")  # a series' own label is its own
    with pytest.raises(IntegrityError), transaction.atomic():
        Label.objects.create(patient=patient, series=series, value="normal", source="ui")
    r = client_as("admin").post("/admin/annotations/label/add/", {
        "patient": patient.pk, "value": "normal", "side": "none", "source": "ui", "note": "", "is_current": "on",
        "created_at_0": "2026-12-07", "created_at_1": "10:00:00"})
    assert r.status_code == 200 and "already has a current label" in r.content.decode()
    assert Label.objects.filter(patient=patient, is_current=True).count() == 2  # the patient's and the series'


def test_one_promoted_run_per_dataset():
    ds = make_dataset("promoted")
    split = make_split(ds)
    first = make_run(ds, split, operating_value=0.5, promoted=True)
    second = make_run(ds, split, operating_value=0.5)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.filter(pk=second.pk).update(promoted=True)
    promote(second)  # the one way: the other is unpromoted in the same transaction
    assert list(TrainingRun.objects.filter(dataset=ds, promoted=True).values_list("pk", flat=True)) == [second.pk]
    make_run(make_dataset("other"), operating_value=0.5, promoted=True)  # another dataset keeps its own
    assert TrainingRun.objects.filter(promoted=True).count() == 2 and first.pk != second.pk
