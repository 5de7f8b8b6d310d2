"""Running work as a Job: queue it after commit, move it through its states, report progress.

Write a task as ``@job_task(queue="cpu")`` over ``fn(job: Job, **params)``; start it with
``enqueue(fn, kind=..., params=..., user=...)``.  Tasks must be idempotent: with late acknowledgement a
task interrupted by a dying worker is delivered again (or re-sent at worker start, see ``signals``).
"""
from __future__ import annotations

import functools
import logging
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from .models import Job

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20
STALE_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 3


class JobCancelled(Exception):
    """Raised inside a job when a user asked to cancel it."""


class Progress:
    """Reports progress of one job to the database; checks for cancellation on every report."""

    def __init__(self, job: Job):
        self.job = job

    def __call__(self, percent: float, message: str = "") -> None:
        percent = max(0.0, min(100.0, float(percent)))
        Job.objects.filter(pk=self.job.pk).update(
            progress=percent, message=message[:500], heartbeat_at=timezone.now()
        )
        self.job.progress, self.job.message = percent, message
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled(f"{self.job.kind} #{self.job.pk} cancelled")

    def sub(self, start: float, end: float) -> Callable[[float, str], None]:
        """A reporter mapping 0-100 onto [start, end] of this job's progress."""
        return lambda p, m="": self(start + (end - start) * p / 100.0, m)


class _Heartbeat(threading.Thread):
    def __init__(self, job_id: int):
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.job_id = job_id
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.wait(HEARTBEAT_SECONDS):
                Job.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
        finally:
            connection.close()


def _claim(job_id: int, celery_id: str, worker: str) -> Job | None:
    """Mark the job running; None when it is already finished (a duplicate delivery)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in Job.FINISHED:
            return None
        if job.cancel_requested:
            job.status, job.finished_at, job.message = Job.Status.CANCELLED, timezone.now(), "cancelled before start"
            job.save()
            return None
        job.status = Job.Status.RUNNING
        job.attempts += 1
        job.celery_id = celery_id or job.celery_id
        job.worker = worker or socket.gethostname()
        job.started_at = job.started_at or timezone.now()
        job.heartbeat_at = timezone.now()
        job.error = ""
        job.save()
        return job


def finish(job: Job, status: str, *, message: str = "", error: str = "", result: dict | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "heartbeat_at": timezone.now()}
    if message:
        fields["message"] = message[:500]
    if error:
        fields["error"] = error
    if result is not None:
        fields["result"] = result
    if status == Job.Status.SUCCEEDED:
        fields["progress"] = 100.0
    Job.objects.filter(pk=job.pk).update(**fields)
    for key, value in fields.items():
        setattr(job, key, value)


def run_job(fn: Callable[..., dict | None], job_id: int, celery_id: str = "", worker: str = "") -> None:
    """Run ``fn(job, **job.params)`` with state changes, heartbeat and error capture."""
    close_old_connections()
    job = _claim(job_id, celery_id, worker)
    if job is None:
        return
    beat = _Heartbeat(job.pk)
    beat.start()
    try:
        result = fn(job, **job.params)
    except JobCancelled:
        finish(job, Job.Status.CANCELLED, message="cancelled")
    except SoftTimeLimitExceeded:
        finish(job, Job.Status.FAILED, message="time limit exceeded", error="The job ran past its time limit.")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        log.exception("job %s failed", job.pk)
        finish(job, Job.Status.FAILED, message=f"{type(exc).__name__}: {exc}"[:500], error=traceback.format_exc())
    else:
        job.refresh_from_db(fields=["status"])
        if job.status == Job.Status.RUNNING:  # fn may have finished it itself (e.g. fan-out)
            finish(job, Job.Status.SUCCEEDED, message=job.message or "done", result=result or {})
    finally:
        beat.stop.set()
        close_old_connections()


def job_task(*, queue: str = "cpu", name: str | None = None) -> Callable:
    """Turn ``fn(job, **params)`` into a late-acknowledged Celery task on ``queue``."""

    def decorate(fn: Callable[..., dict | None]):
        task_name = name or f"{fn.__module__}.{fn.__name__}"

        @shared_task(name=task_name, bind=True, queue=queue, acks_late=True, reject_on_worker_lost=True)
        @functools.wraps(fn)
        def task(self, job_id: int) -> None:
            run_job(fn, job_id, self.request.id or "", self.request.hostname or "")

        task.job_fn = fn
        task.queue_name = queue
        return task

    return decorate


def enqueue(task, *, kind: str, params: dict | None = None, user=None, parent: Job | None = None) -> Job:
    """Create a queued Job and send its task once the surrounding transaction commits."""
    job = Job.objects.create(
        kind=kind,
        task_name=task.name,
        queue=task.queue_name,
        params=params or {},
        created_by=user if getattr(user, "is_authenticated", False) else None,
        parent=parent,
    )
    transaction.on_commit(lambda: send(job))
    return job


def send(job: Job) -> None:
    """Send (or re-send) the job's task message."""
    from celery import current_app

    result = current_app.send_task(job.task_name, args=[job.pk], queue=job.queue)
    Job.objects.filter(pk=job.pk).update(celery_id=result.id)
    job.celery_id = result.id


def request_cancel(job: Job) -> None:
    """Ask a job (and its children) to stop; a queued job is cancelled at once."""
    ids = [job.pk, *job.children.values_list("pk", flat=True)]
    Job.objects.filter(pk__in=ids).update(cancel_requested=True)
    Job.objects.filter(pk__in=ids, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now(), message="cancelled"
    )


def recover_orphans(hostname: str) -> list[int]:
    """At worker start: jobs this worker (Celery node name) was running died with it. Re-send them (tasks are
    idempotent) up to MAX_ATTEMPTS, then mark them failed. Jobs of any host whose heartbeat
    stopped long ago are failed too, so nothing stays 'running' forever."""
    resent: list[int] = []
    for job in Job.objects.filter(status=Job.Status.RUNNING, worker=hostname):
        if job.attempts >= MAX_ATTEMPTS:
            finish(job, Job.Status.FAILED, message="worker lost", error=f"Worker {hostname} died {job.attempts} times.")
            continue
        Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, message="worker restarted; re-queued")
        send(job)
        resent.append(job.pk)
    reap_stale()
    return resent


def reap_stale(now=None) -> int:
    """Fail running jobs whose heartbeat stopped more than STALE_AFTER ago."""
    now = now or timezone.now()
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER)
    return stale.update(
        status=Job.Status.FAILED, finished_at=now, message="worker lost", error="No heartbeat from its worker."
    )
