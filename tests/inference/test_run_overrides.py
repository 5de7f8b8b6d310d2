"""A training override the preset does not allow, or that the run would not honour, is refused where a run is
started (API 400 naming the field, ``train`` command error, Models page message) and nothing is created:
before, ``epochs: -1`` or ``image: "x"`` were accepted (201) and the run failed later, or a 500."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from adrenal_site.jobs.models import Job
from inference.models import DatasetSplit, TrainingRun
from tests.factories import make_dataset, make_split


@pytest.fixture
def dataset(db, users):
    return make_dataset("overrides-ds", members=[users["lead"]])


def nothing_created() -> bool:
    return not TrainingRun.objects.exists() and not Job.objects.exists() and not DatasetSplit.objects.exists()


@pytest.mark.parametrize("overrides,field", [
    ({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"mil": {"top_k": 0}}, "mil.top_k"),
    ({"test_fraction": 1.5}, "test_fraction"), ({"n_folds": 1}, "n_folds"), ({"n_folds": 0}, "n_folds"),
    ({"nonexistent": 1}, "nonexistent"), ({"image": "x"}, "image"), ({"epochs": True}, "epochs"),
])
def test_api_answers_400_naming_the_field_and_creates_nothing(dataset, client_as, overrides, field):
    r = client_as("lead").post("/api/runs/start/", json.dumps({"dataset": dataset.pk, "preset": "fast",
                                                               "overrides": overrides}),
                               content_type="application/json")
    assert r.status_code == 400, r.content
    message = r.json()["overrides"][0]
    assert message.startswith(f"{field}: "), message
    assert nothing_created()


def test_api_refuses_a_split_setting_the_saved_split_would_not_use(dataset, client_as):
    make_split(dataset, folds=[["a"], ["b"], ["c"]], test_fraction=0.25, seed=4)
    c = client_as("lead")
    for overrides, field in (({"test_fraction": 0.3}, "test_fraction"), ({"n_folds": 5}, "n_folds")):
        r = c.post("/api/runs/start/", json.dumps({"dataset": dataset.pk, "preset": "tiny", "overrides": overrides}),
                   content_type="application/json")
        assert r.status_code == 400, r.content
        message = r.json()["overrides"][0]
        assert message.startswith(f"{field}: ") and "would not be used" in message, message
        assert "test fraction 0.25, 3 folds, seed 4" in message
    assert not TrainingRun.objects.exists() and not Job.objects.exists()


def test_train_command_stops_with_the_message(dataset):
    for sets, says in ((["mil.top_k=0"], "mil.top_k: 0 is out of range: allowed an integer from 1 to"),
                       (["image=x"], "image: a section"),
                       (["epoch=3"], "epoch: unknown setting (did you mean epochs?)"),
                       (["epochs"], "expected KEY=VALUE")):
        args = [a for s in sets for a in ("--set", s)]
        with pytest.raises(CommandError) as info:
            call_command("train", "--dataset", dataset.name, "--preset", "fast", *args)
        assert says in str(info.value), str(info.value)
    assert nothing_created()


def test_models_page_shows_the_refusal(dataset, client_as):
    c = client_as("lead")
    r = c.post(reverse("runs"), {"dataset": dataset.pk, "preset": "tiny", "epochs": "1001"}, follow=True)
    assert r.status_code == 200 and b"epochs: " in r.content and b"1000" in r.content
    assert b'max="1000"' in c.get(reverse("runs")).content
    assert nothing_created()
