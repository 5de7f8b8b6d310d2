"""The Job row every long-running piece of work reports through: the project's one state machine.

Records that run as jobs (training runs and their folds, evaluations, predictions, imports) hold a
``job`` and read their state from it through :class:`JobState`; nothing keeps a second status.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from adrenal_site.roles import ADMIN, has_role


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> JobQuerySet:
        """The jobs ``user`` may see, follow and (with the lead role) cancel: admins every job; anyone else the
        jobs of the datasets they are a member of (``dataset_id``) and the jobs of no dataset they started
        themselves (an upload they submitted). A job of a dataset is its members' only: one removed from the
        dataset no longer sees (or cancels) the runs, evaluations and verdicts they started there. Jobs of no
        dataset (the DICOM node's deliveries, sends) are admins' and their starter's. Anonymous users see none."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        if has_role(user, ADMIN):
            return self
        # ``user.datasets``: the membership the study store (annotations.Dataset.members) keeps; read through the
        # user so this app imports nothing above it
        member_of = user.datasets.values("pk") if hasattr(user, "datasets") else []
        return self.filter(models.Q(dataset_id__in=member_of) | models.Q(created_by=user, dataset_id__isnull=True))


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    # The transitions ``adrenal_site.jobs.runner`` makes; anything else is a bug.
    TRANSITIONS = {
        Status.QUEUED: {Status.RUNNING, Status.CANCELLED, Status.FAILED},
        Status.RUNNING: {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.QUEUED},
    }

    kind = models.CharField(max_length=64, db_index=True, help_text="What the job does, e.g. import, train_fold")
    task_name = models.CharField(max_length=200, help_text="Celery task that runs it")
    queue = models.CharField(max_length=16, default="cpu")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0-100")
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_id = models.CharField(max_length=64, blank=True, db_index=True)
    worker = models.CharField(max_length=200, blank=True, help_text="Hostname of the worker running it")
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who asked to cancel it (empty: the system, e.g. a sibling failed)")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    join_task = models.CharField(max_length=200, blank=True,
                                 help_text="Task queued as a last child once every child succeeded (fan-in)")
    then_task = models.CharField(max_length=200, blank=True,
                                 help_text="Task queued, with the same params, once this job succeeded")
    awaiting_children = models.BooleanField(default=False,
                                            help_text="Its own work is done; it finishes with its children")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    dataset_id = models.PositiveIntegerField(
        null=True, blank=True, db_index=True,
        help_text="The dataset (annotations.Dataset id) the job works on: who may see it (JobQuerySet.visible_to). "
                  "A plain id: jobs sit below the apps that own datasets.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class JobState:
    """Mixin for a model with a ``job`` foreign key: its state is the job's (``status``, ``progress``,
    ``message``), so cancel, failure and progress follow the runner's one path."""

    job: Job | None
    Status = Job.Status
    status_without_job = Job.Status.QUEUED  # records stored only when their work is done say SUCCEEDED

    @property
    def status(self) -> str:
        return self.job.status if self.job_id else self.status_without_job

    @property
    def is_active(self) -> bool:
        return self.status in Job.ACTIVE

    @property
    def is_finished(self) -> bool:
        return self.status in Job.FINISHED

    @property
    def progress(self) -> float:
        return self.job.progress if self.job_id else 0.0


class JobStateQuerySet(models.QuerySet):
    """Filters on the state of each row's job."""

    def with_status(self, *statuses: str) -> JobStateQuerySet:
        return self.filter(job__status__in=statuses)

    def succeeded(self) -> JobStateQuerySet:
        return self.with_status(Job.Status.SUCCEEDED)

    def active(self) -> JobStateQuerySet:
        return self.with_status(*Job.ACTIVE)
