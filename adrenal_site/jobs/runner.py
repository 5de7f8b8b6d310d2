"""Running work as a Job: queue it after commit, move it through its states, report progress.

The one state machine (``Job.Status``, transitions in ``Job.TRANSITIONS``), changed only here:

- ``@job_task(kind, queue=...)`` over ``fn(job: Job, **params)`` makes a late-acknowledged Celery task;
  ``enqueue(task, params=..., user=...)`` creates the queued Job and sends the task after commit.
- **Fan-out and fan-in.** Jobs queued with ``parent=job`` from inside ``fn`` are its children: when ``fn``
  returns, the parent stays running (``awaiting_children``) until they finish. ``enqueue(..., join=task)``
  names a task queued as one more child once every other child succeeded (an aggregation step); the parent
  then succeeds with the join's result. A failed child fails its parent and cancels its siblings.
- **Continuation.** ``enqueue(..., then=task)`` queues ``task`` with the same params once the job succeeded;
  a child's continuation is queued as a child of the same parent (before the parent is settled), so a
  parent waits for a chain of children (``train`` → ``train_images`` then ``train_folds``).
- **Cancel.** ``request_cancel(job)`` stops a job and its descendants: queued ones at once, running ones at
  their next progress report (``JobCancelled``), a parent waiting for children at once.
- **End.** Every move into a finished state (succeeded, failed, cancelled, from any path) sends
  ``job_ended(sender=Job, job=row)`` once the transaction commits: apps clean up after a job there (the store
  removes the job's upload, ``annotations.services.uploads.discard_upload``).

Tasks must be idempotent: with late acknowledgement a task interrupted by a dying worker is delivered again
(or re-sent at worker start, see ``signals``) and runs again from 0 % once its first run stopped beating, at most
``MAX_ATTEMPTS`` times. A job delivered twice while its run is alive runs once: the second delivery waits and
looks again (``_RunningElsewhere``); a run whose job another run ended stops at its next progress report.
"""
from __future__ import annotations

import functools
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ObjectDoesNotExist
from django.db import close_old_connections, connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from .models import Job

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20
ALIVE_WITHIN = timedelta(seconds=2 * HEARTBEAT_SECONDS + 5)  # a running job's run is alive while it beats
STALE_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 3
JobFn = Callable[..., dict | None]

job_ended = Signal()  # job_ended(sender=Job, job=Job): the job reached a finished state (after commit)


class JobCancelled(Exception):
    """Raised inside a job when a user asked to cancel it."""


class JobStopped(JobCancelled):
    """Raised inside a job whose row another run already ended (a duplicate delivery): this run stops."""


class _RunningElsewhere(Exception):
    """A delivery of a job whose run still beats (the same task delivered twice): look again in ``seconds``."""

    def __init__(self, seconds: float):
        super().__init__(f"running elsewhere; again in {seconds:.0f} s")
        self.seconds = seconds


class Progress:
    """Reports progress of one job to the database; checks for cancellation on every report."""

    def __init__(self, job: Job):
        self.job = job

    def __call__(self, percent: float, message: str = "") -> None:
        percent = max(0.0, min(100.0, float(percent)))
        # never a finished job's progress: it keeps the 100 % and message it ended with, and the run reporting it
        # (a duplicate delivery whose job another run ended) stops here
        if not Job.objects.filter(pk=self.job.pk).exclude(status__in=Job.FINISHED).update(
                progress=percent, message=message[:500], heartbeat_at=timezone.now()):
            raise JobStopped(f"{self.job.kind} #{self.job.pk} is no longer running")
        self.job.progress, self.job.message = percent, message
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled(f"{self.job.kind} #{self.job.pk} cancelled")

    def sub(self, start: float, end: float) -> Callable[[float, str], None]:
        """A reporter mapping 0-100 onto [start, end] of this job's progress."""
        return lambda p, m="": self(start + (end - start) * p / 100.0, m)


def no_progress(percent: float, message: str = "") -> None:
    """The reporter used when nobody follows the work (services called outside a job)."""


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


# ----------------------------------------------------------------------------------- transitions

def _move(job: Job, status: str, **fields: Any) -> bool:
    """Apply one transition to a row locked by the caller; False when it is not allowed from its state."""
    if status not in Job.TRANSITIONS.get(job.status, set()):
        return False
    now = timezone.now()
    fields = {"status": status, "heartbeat_at": now, **fields}
    if status in Job.FINISHED:
        fields["finished_at"] = now
        fields["awaiting_children"] = False
    if status == Job.Status.SUCCEEDED:
        fields["progress"] = 100.0
    for key, value in fields.items():
        setattr(job, key, value)
    job.save(update_fields=list(fields))
    if status in Job.FINISHED:
        transaction.on_commit(functools.partial(_announce_end, job.pk), robust=True)
    return True


def _announce_end(job_id: int) -> None:
    job = Job.objects.filter(pk=job_id).first()
    if job is not None:
        job_ended.send_robust(sender=Job, job=job)


def finish(job: Job, status: str, *, message: str = "", error: str = "", result: dict | None = None) -> bool:
    """End a job (succeeded, failed or cancelled) unless it already ended; then settle its parent and queue
    its continuation. Returns whether this call ended it."""
    fields: dict[str, Any] = {}
    if message:
        fields["message"] = message[:500]
    if error:
        fields["error"] = error
    if result is not None:
        fields["result"] = result
    with transaction.atomic():
        row = Job.objects.select_for_update().get(pk=job.pk)
        moved = _move(row, status, **fields)
        if moved and status == Job.Status.SUCCEEDED and row.then_task:  # a child's continuation is its sibling
            _enqueue_name(row.then_task, params=row.params, user=row.created_by, parent=row.parent,
                          dataset=row.dataset_id)
    for key in ("status", "message", "error", "result", "progress", "finished_at", "awaiting_children"):
        setattr(job, key, getattr(row, key))
    if moved and row.parent_id:
        settle(row.parent_id)
    return moved


def settle(job_id: int) -> None:
    """A child of ``job_id`` changed: fail the parent when a child failed, queue its join once every child
    succeeded, finish it once the join (or the last child) is done. Under the parent's row lock, so
    concurrent children settle it exactly once."""
    cancel_siblings = False
    with transaction.atomic():
        parent = Job.objects.select_for_update().filter(pk=job_id).first()
        if parent is None or parent.status in Job.FINISHED:
            return
        children = list(parent.children.all())
        failed = [c for c in children if c.status == Job.Status.FAILED]
        if failed:
            c = failed[0]
            message = f"{c.kind} #{c.pk} failed: {c.message}"[:500]
            _move(parent, Job.Status.FAILED, message=message, error=c.error or message)
            cancel_siblings = True
        elif parent.awaiting_children and all(c.status in Job.FINISHED for c in children):
            cancelled = [c for c in children if c.status == Job.Status.CANCELLED]
            if cancelled:
                _move(parent, Job.Status.CANCELLED, message=cancelled[0].message or "cancelled")
            elif parent.join_task and not any(c.task_name == parent.join_task for c in children):
                _enqueue_name(parent.join_task, params=parent.params, user=parent.created_by, parent=parent)
                Job.objects.filter(pk=parent.pk).update(message="joining its children's results")
            else:
                join = next((c for c in children if c.task_name == parent.join_task), None)
                result = join.result if join else {"children": len(children)}
                message = (join.message if join else "") or "done"
                _move(parent, Job.Status.SUCCEEDED, message=message, result=result)
                if parent.then_task:
                    _enqueue_name(parent.then_task, params=parent.params, user=parent.created_by,
                                  parent=parent.parent, dataset=parent.dataset_id)
    if cancel_siblings:
        request_cancel(parent)
    if parent.parent_id and parent.status in Job.FINISHED:
        settle(parent.parent_id)


def _claim(job_id: int, celery_id: str, worker: str) -> Job | None:
    """Mark the job running; None when it is already finished (a duplicate delivery) or cancelled.

    A job found running was delivered again: while its run still beats (``ALIVE_WITHIN``) it is the same task
    delivered twice and ``_RunningElsewhere`` says when to look again; once the beat stopped, its run died (a
    worker process killed, out of memory) and it runs again from the start, at most ``MAX_ATTEMPTS`` times."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in Job.FINISHED:
            return None
        if job.status == Job.Status.RUNNING and job.awaiting_children:
            return None  # its own work was done: a re-delivery must not redo the fan-out
        lost = job.status == Job.Status.RUNNING
        beat = job.heartbeat_at or job.started_at
        if lost and not job.cancel_requested and beat and timezone.now() - beat < ALIVE_WITHIN:
            raise _RunningElsewhere(max(1.0, (beat + ALIVE_WITHIN - timezone.now()).total_seconds()))
        if job.cancel_requested:
            _move(job, Job.Status.CANCELLED, message=cancel_message(job, "cancelled before start"))
            claimed = None
        elif lost and job.attempts >= MAX_ATTEMPTS:
            _move(job, Job.Status.FAILED, message=f"worker lost {job.attempts} times; not retried",
                  error=f"The process running this job died {job.attempts} times (killed, or out of memory); "
                        "it is not run again.")
            claimed = None
        else:
            job.attempts += 1
            job.celery_id = celery_id or job.celery_id
            job.worker = worker or socket.gethostname()
            job.started_at = job.started_at or timezone.now()
            job.error = ""
            fields = ["attempts", "celery_id", "worker", "started_at", "error"]
            if job.attempts > 1:  # a run after a lost one starts again from 0 %, saying so
                job.progress = 0.0
                job.message = f"restarted (attempt {job.attempts} of {MAX_ATTEMPTS}): its previous worker was lost"
                fields += ["progress", "message"]
            job.save(update_fields=fields)
            if job.status == Job.Status.QUEUED:
                _move(job, Job.Status.RUNNING)
            claimed = job
    if claimed is None and job is not None and job.parent_id and job.status in Job.FINISHED:
        settle(job.parent_id)
    return claimed


def _returned(job: Job, result: dict | None) -> None:
    """``fn`` returned: succeed, or wait for the children it queued."""
    with transaction.atomic():
        row = Job.objects.select_for_update().get(pk=job.pk)
        if row.status != Job.Status.RUNNING:
            return
        if not row.children.exists() and not row.join_task:
            waiting = False
        else:
            waiting = True
            row.awaiting_children = True
            row.result = result or {}
            row.save(update_fields=["awaiting_children", "result"])
    if waiting:
        settle(job.pk)
    else:
        # a task that did not report its end leaves a step's message ("extracting the upload"): not what it did
        finished = job.message if job.message and (job.progress or 0) >= 100 else "done"
        finish(job, Job.Status.SUCCEEDED, message=finished, result=result or {})


def failure_message(exc: BaseException) -> str:
    """What a failed job's message says of the exception that ended it: ``Type: text``; a row the job works on
    that is gone ("TrainingRun matching query does not exist.") is named as deleted meanwhile."""
    if isinstance(exc, ObjectDoesNotExist) and str(exc).endswith("matching query does not exist."):
        model = str(exc).removesuffix(" matching query does not exist.")
        return f"{model} not found: it was deleted while this job was queued or running"
    return f"{type(exc).__name__}: {exc}"


def run_job(fn: JobFn, job_id: int, celery_id: str = "", worker: str = "") -> None:
    """Run ``fn(job, **job.params)`` with state changes, heartbeat and error capture."""
    close_old_connections()
    job = _claim(job_id, celery_id, worker)
    if job is None:
        return
    beat = _Heartbeat(job.pk)
    beat.start()
    try:
        result = fn(job, **job.params)
    except JobStopped:  # another run ended (or re-queued) the job: its state is that run's
        log.warning("job %s: a second run of it stopped; its row says %s", job.pk,
                    Job.objects.filter(pk=job.pk).values_list("status", flat=True).first())
    except JobCancelled:
        job.refresh_from_db(fields=["cancelled_by"])
        finish(job, Job.Status.CANCELLED, message=cancel_message(job))
    except SoftTimeLimitExceeded:
        finish(job, Job.Status.FAILED, message="time limit exceeded", error="The job ran past its time limit.")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        log.exception("job %s failed", job.pk)
        finish(job, Job.Status.FAILED, message=failure_message(exc)[:500], error=traceback.format_exc())
    else:
        _returned(job, result)
    finally:
        beat.stop.set()
        close_old_connections()


# ----------------------------------------------------------------------------------- tasks and queueing

JOB_KINDS: set[str] = set()  # every ``Job.kind`` a task declares (``?kind=`` of the jobs API takes these)


def job_task(kind: str, *, queue: str = "cpu", name: str | None = None) -> Callable[[JobFn], Any]:
    """Turn ``fn(job, **params)`` into a late-acknowledged Celery task on ``queue``; jobs it runs are of
    ``kind`` (``Job.kind``, recorded in ``JOB_KINDS``). The task (named ``name``, default ``module.function``)
    keeps ``fn`` as ``.job_fn`` (``run_now`` runs it in this process)."""
    JOB_KINDS.add(kind)

    def decorate(fn: JobFn):
        task_name = name or f"{fn.__module__}.{fn.__name__}"

        @shared_task(name=task_name, bind=True, queue=queue, acks_late=True, reject_on_worker_lost=True,
                     max_retries=None)
        @functools.wraps(fn)
        def task(self, job_id: int) -> None:
            try:
                run_job(fn, job_id, self.request.id or "", self.request.hostname or "")
            except _RunningElsewhere as busy:  # the same job delivered twice: look again once its run may be gone
                raise self.retry(countdown=busy.seconds) from None

        task.job_fn = fn
        task.queue_name = queue
        task.kind = kind
        return task

    return decorate


def enqueue(task, *, params: dict | None = None, user=None, parent: Job | None = None, join=None, then=None,
            kind: str | None = None, send: bool = True, dataset=None) -> Job:
    """Create a queued Job of ``task`` and send it once the surrounding transaction commits.

    ``join``/``then``: tasks for fan-in and continuation (module docstring). ``send=False`` only creates the
    row, for ``run_now`` in this process (commands with ``--sync``). ``dataset`` (a Dataset or its id; default:
    the parent's) is the dataset the job works on: its members see the job (``Job.objects.visible_to``)."""
    dataset_id = getattr(dataset, "pk", dataset)
    if dataset_id is None and parent is not None:
        dataset_id = parent.dataset_id
    # a child queued once its family was asked to stop (a continuation of a child that finished after the cancel)
    # is asked too, by the same user: it stops before it starts, saying who asked, instead of running unasked
    stop = Job.objects.filter(pk=parent.pk, cancel_requested=True).values("cancelled_by").first() \
        if parent is not None else None
    job = Job.objects.create(
        kind=kind or task.kind, task_name=task.name, queue=task.queue_name, params=params or {},
        created_by=user if getattr(user, "is_authenticated", False) else None, parent=parent,
        join_task=join.name if join is not None else "", then_task=then.name if then is not None else "",
        dataset_id=dataset_id, cancel_requested=stop is not None,
        cancelled_by_id=stop["cancelled_by"] if stop is not None else None,
    )
    if send:
        transaction.on_commit(lambda: send_job(job))
    return job


def _enqueue_name(task_name: str, *, params: dict, user, parent: Job | None, dataset=None) -> Job:
    """Queue a registered task by name (joins and continuations recorded on a Job; they keep its dataset)."""
    return enqueue(current_app.tasks[task_name], params=params, user=user, parent=parent, dataset=dataset)


def run_now(task, job: Job) -> Job:
    """Run a job of ``task`` in this process (no worker); returns the refreshed row."""
    run_job(task.job_fn, job.pk)
    job.refresh_from_db()
    return job


NOT_SENT = "not queued: the job queue (broker) could not be reached; start it again once it is back"


def send_job(job: Job) -> None:
    """Send (or re-send) the job's task message. A broker that cannot be reached (Redis restarting, down) fails
    the job saying so, at once: it neither stays 'queued' with no message behind it nor raises into the request
    that started it (after its commit, a 500 with the job already stored)."""
    try:
        result = current_app.send_task(job.task_name, args=[job.pk], queue=job.queue)
    except Exception as exc:  # noqa: BLE001 - kombu's OperationalError, a refused or timed-out connection
        log.error("job %s could not be sent: %s", job.pk, exc)
        finish(job, Job.Status.FAILED, message=NOT_SENT, error=f"{NOT_SENT}. {type(exc).__name__}: {exc}")
        return
    Job.objects.filter(pk=job.pk).update(celery_id=result.id)
    job.celery_id = result.id


def cancel_message(job: Job, what: str = "cancelled") -> str:
    """``what`` and who asked for it ("cancelled by alice"), as the job's message says it."""
    user = job.cancelled_by if job.cancelled_by_id else None
    return f"{what} by {user.get_username()}" if user else what


def request_cancel(job: Job, by=None) -> None:
    """Ask a job and its descendants to stop: queued ones are cancelled at once, running ones at their next
    progress report, a parent whose own work is done (waiting for children) at once. ``by``: the user who asked
    (kept on each job not already asked to stop, and named in its message); None for the system."""
    ids, frontier = [job.pk], [job.pk]
    while frontier:
        frontier = list(Job.objects.filter(parent_id__in=frontier).values_list("pk", flat=True))
        ids += frontier
    by = by if getattr(by, "is_authenticated", False) else None
    Job.objects.filter(pk__in=ids, cancel_requested=False).update(cancel_requested=True, cancelled_by=by)
    for pk in ids:
        with transaction.atomic():
            row = Job.objects.select_for_update().get(pk=pk)
            if row.status == Job.Status.QUEUED or (row.status == Job.Status.RUNNING and row.awaiting_children):
                _move(row, Job.Status.CANCELLED, message=cancel_message(row))
    job.refresh_from_db()


def recover_orphans(hostname: str) -> list[int]:
    """At worker start: jobs this worker (Celery node name) was running died with it. Re-send them (tasks are
    idempotent) up to MAX_ATTEMPTS, then mark them failed. Jobs of any host whose heartbeat
    stopped long ago are failed too, so nothing stays 'running' forever."""
    resent: list[int] = []
    for job in Job.objects.filter(status=Job.Status.RUNNING, worker=hostname, awaiting_children=False):
        if job.attempts >= MAX_ATTEMPTS:
            finish(job, Job.Status.FAILED, message="worker lost", error=f"Worker {hostname} died {job.attempts} times.")
            continue
        with transaction.atomic():
            row = Job.objects.select_for_update().get(pk=job.pk)
            if not _move(row, Job.Status.QUEUED, message="worker restarted; re-queued"):
                continue
        send_job(row)
        resent.append(row.pk)
    reap_stale()
    return resent


def reap_stale(now=None) -> int:
    """Fail running jobs whose heartbeat stopped more than STALE_AFTER ago (a parent waiting for its
    children has no heartbeat of its own and is left to them)."""
    now = now or timezone.now()
    stale = Job.objects.filter(status=Job.Status.RUNNING, awaiting_children=False,
                               heartbeat_at__lt=now - STALE_AFTER)
    n = 0
    for job in stale:
        n += finish(job, Job.Status.FAILED, message="worker lost", error="No heartbeat from its worker.")
    return n


def wait(job: Job, *, poll_s: float = 0.5, timeout_s: float | None = None,
         on_change: Callable[[Job], None] | None = None) -> Job:
    """Block until ``job`` finished (commands that queue a job and wait for it); ``on_change(job)`` is called
    whenever its status, progress or message changed. Raises TimeoutError after ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    shown = None
    while True:
        job.refresh_from_db()
        state = (job.status, round(job.progress, 1), job.message)
        if state != shown and on_change is not None:
            on_change(job)
        shown = state
        if job.status in Job.FINISHED:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{job.kind} job #{job.pk} still {job.status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
