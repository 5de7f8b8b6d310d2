"""Persisted splits, training runs (the model registry), folds and evaluations."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class DatasetSplit(models.Model):
    """A dataset's patient-grouped, label-stratified test split and cross-validation folds.

    Persisted once per dataset so later runs are compared on the same test patients.
    """

    dataset = models.OneToOneField("annotations.Dataset", on_delete=models.CASCADE, related_name="split")
    seed = models.IntegerField(default=0)
    test_fraction = models.FloatField(default=0.2)
    test_patients = models.JSONField(help_text="pseudo ids")
    folds = models.JSONField(help_text="list of lists of validation patient pseudo ids")
    created_at = models.DateTimeField(default=timezone.now)


class TrainingRun(models.Model):
    """A training run; a finished run is a model version, and a lead may promote one per dataset."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        AGGREGATING = "aggregating"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="runs")
    split = models.ForeignKey(DatasetSplit, on_delete=models.PROTECT, related_name="runs")
    name = models.CharField(max_length=200, blank=True)
    preset = models.CharField(max_length=32)
    config = models.JSONField(help_text="The full configuration, stored with the run")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    pretrained = models.CharField(max_length=200, blank=True, help_text="ImageNet weights file used, or '' (random)")
    folds_done = models.PositiveIntegerField(default=0, help_text="Counter taken under select_for_update")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    artifacts_dir = models.CharField(max_length=300, blank=True, help_text="Relative to MEDIA_ROOT")
    operating_value = models.FloatField(null=True, blank=True)
    objective = models.CharField(max_length=32, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="Model version number once finished")
    promoted = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.preset}, {self.status})"


class FoldRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="folds")
    fold = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    epoch = models.PositiveIntegerField(default=0, help_text="Epochs completed")
    best_epoch = models.IntegerField(null=True, blank=True)
    val_loss = models.FloatField(null=True, blank=True, help_text="Best validation loss")
    history = models.JSONField(default=list, blank=True, help_text="Per-epoch losses and metrics")
    weights = models.CharField(max_length=300, blank=True, help_text="Best weights, relative to MEDIA_ROOT")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["run", "fold"]
        constraints = [models.UniqueConstraint(fields=["run", "fold"], name="uniq_run_fold")]


class Evaluation(models.Model):
    """A run's evaluation on its split's test patients, as the ``evaluate --json`` document."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="evaluations")
    objective = models.CharField(max_length=32)
    aggregator = models.CharField(max_length=32, default="fraction")
    operating_value = models.FloatField()
    result = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
