"""A real Celery worker on the configured broker moves Job rows through their states."""
import pytest

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import enqueue, recover_orphans, reap_stale
from adrenal_site.jobs.tasks import selftest_cpu, selftest_gpu
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker]


def test_job_goes_queued_running_succeeded_with_progress(celery_worker_proc, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue(selftest_cpu, kind="selftest", params={"steps": 4, "delay": 0.5})
    assert Job.objects.get(pk=job.pk).status in {"queued", "running"}
    seen = set()

    def finished():
        j = Job.objects.get(pk=job.pk)
        seen.add((j.status, round(j.progress)))
        return j.status in Job.FINISHED

    wait_for(finished, 60, 0.05, "selftest job")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.progress == 100 and job.result == {"steps": 4}
    assert any(status == "running" and 0 < p < 100 for status, p in seen), seen
    assert job.started_at and job.finished_at and job.worker.startswith("testworker@")


def test_gpu_queue_and_failure_recorded(celery_worker_proc, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue(selftest_gpu, kind="selftest", params={"steps": 1, "delay": 0, "fail": True})
    wait_for(lambda: Job.objects.get(pk=job.pk).status in Job.FINISHED, 60, what="failing job")
    job.refresh_from_db()
    assert job.status == "failed"
    assert "self-test asked to fail" in job.error and "RuntimeError" in job.message
    assert job.queue == "gpu"


def test_task_is_sent_only_after_commit(transactional_db):
    from django.db import transaction

    sent = []
    with transaction.atomic():
        job = enqueue(selftest_cpu, kind="selftest")
        sent.append(Job.objects.get(pk=job.pk).celery_id)
        transaction.set_rollback(True)
    assert sent == [""]
    assert not Job.objects.filter(pk=job.pk).exists()


def test_killed_worker_job_is_resent_then_failed(celery_worker_proc, django_capture_on_commit_callbacks):
    """A worker killed mid-task: on restart the job is re-sent and completes; a job whose
    worker never returns is failed by the heartbeat reaper instead of staying running."""
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue(selftest_cpu, kind="selftest", params={"steps": 20, "delay": 0.5})
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", 60, what="job running")
    celery_worker_proc.kill()
    assert Job.objects.get(pk=job.pk).status == "running"
    celery_worker_proc.start()  # same node name: recover_orphans re-sends it
    wait_for(lambda: Job.objects.get(pk=job.pk).status in Job.FINISHED, 90, what="job after restart")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts >= 2


def test_reaper_fails_jobs_without_heartbeat(transactional_db):
    from datetime import timedelta

    from django.utils import timezone

    old = timezone.now() - timedelta(hours=1)
    job = Job.objects.create(kind="x", task_name="jobs.selftest_cpu", status="running", heartbeat_at=old,
                             worker="gone@nowhere", attempts=1)
    assert recover_orphans("other@host") == []
    job.refresh_from_db()
    assert job.status == "failed" and "heartbeat" in job.error
    assert reap_stale() == 0
