"""The proposal job on a real cpu worker, queued after commit, then re-delivered: same boxes, no new versions."""
from __future__ import annotations

import pytest

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import send_job
from annotations.models import CropBox, Dataset, Series
from annotations.tasks import start_proposals
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker]


def finished(job: Job) -> Job | None:
    job.refresh_from_db()
    return job if job.status in Job.FINISHED else None


def test_worker_proposes_and_a_redelivery_changes_nothing(celery_worker_proc, make_scan, real_scans,
                                                          django_capture_on_commit_callbacks):
    scan = make_scan(real_scans["example_ct_sm"][0], dataset="w", patient="A")
    with django_capture_on_commit_callbacks(execute=True):
        job = start_proposals(dataset=Dataset.objects.get(name="w"))
    wait_for(lambda: finished(job), timeout=120, what="the proposal job")
    assert job.status == Job.Status.SUCCEEDED, (job.message, job.error)
    assert Series.objects.get(pk=scan.pk).box_status == "proposed"
    before = {b.side: (b.version, b.lps_min, b.lps_max) for b in CropBox.objects.filter(series=scan)}
    assert set(before) == {"R", "L"}

    # a late-acknowledged task delivered again (worker died after the work): reset and re-send the same job
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, finished_at=None)
    send_job(job)
    wait_for(lambda: finished(job), timeout=120, what="the re-delivered job")
    assert job.status == Job.Status.SUCCEEDED
    after = {b.side: (b.version, b.lps_min, b.lps_max) for b in CropBox.objects.filter(series=scan)}
    assert after == before
