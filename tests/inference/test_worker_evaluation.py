"""The evaluation job started from the API runs on a real Celery worker and stores its evaluation."""
from __future__ import annotations

import os

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def shared_media(tmp_path, settings):
    """MEDIA_ROOT that the worker subprocess sees too (set before it starts)."""
    media = tmp_path / "media"
    media.mkdir()
    old = os.environ.get("MEDIA_ROOT")
    os.environ["MEDIA_ROOT"] = str(media)
    settings.MEDIA_ROOT = media
    yield media
    if old is None:
        os.environ.pop("MEDIA_ROOT", None)
    else:
        os.environ["MEDIA_ROOT"] = old


def test_evaluate_through_a_worker(shared_media, celery_worker_proc, make_evaluated_run, users, client_as,
                                   django_capture_on_commit_callbacks):
    from adrenal_site.jobs.models import Job
    from inference.models import Evaluation

    run, _ = make_evaluated_run(12, evaluate=False, members=[users["lead"]])
    c = client_as("lead")
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(f"/api/runs/{run.pk}/evaluations/", {"objective": "sensitivity>=0.9"},
                   content_type="application/json")
    assert r.status_code == 202
    job_id = r.json()["job"]
    job = wait_for(lambda: Job.objects.filter(pk=job_id, status__in=Job.FINISHED).first(), timeout=90,
                   what="evaluation job")
    assert job.status == "succeeded", (job.message, job.error)
    ev = Evaluation.objects.get(pk=job.result["evaluation"])
    assert ev.objective == "sensitivity>=0.9" and ev.result["scan"]["n"] == 4
    run.refresh_from_db()
    assert run.operating_value == ev.operating_value
    doc = c.get(f"/api/evaluations/{ev.pk}/").json()
    assert doc["scan"]["sensitivity"] >= 0 and doc["operating_value"] == ev.operating_value
