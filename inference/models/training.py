"""Persisted splits, training runs (the model registry), folds and evaluations.

A run, each of its folds and each evaluation is done by a Job and reads its state from it (``JobState``):
the run's job fans out one fold job per fold and joins them in the aggregation step
(``inference.tasks``), so cancel, failure and progress follow the job runner's one path.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from adrenal_site.jobs.models import Job, JobState, JobStateQuerySet
from annotations.models import Dataset


class RunQuerySet(JobStateQuerySet):
    def visible_to(self, user) -> RunQuerySet:
        """Runs of the datasets ``user`` may see (``Dataset.objects.visible_to``)."""
        return self.filter(dataset__in=Dataset.objects.visible_to(user))


class EvaluationQuerySet(JobStateQuerySet):
    def visible_to(self, user) -> EvaluationQuerySet:
        return self.filter(run__dataset__in=Dataset.objects.visible_to(user))


class DatasetSplit(models.Model):
    """A version of a dataset's patient-grouped, label-stratified test split and cross-validation folds.

    Made on a dataset's first run; a run started when labelled patients outside it exist makes the next version,
    which keeps every patient where it was and adds the new ones (``inference.ml.splits.extend_split``), so later
    runs learn from them, no test patient ever trains, and each run keeps the version it used. Rows are never
    changed once made.
    """

    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="splits")
    version = models.PositiveIntegerField(default=1, help_text="1 for the dataset's first split, then one more per extension")
    seed = models.IntegerField(default=0)
    test_fraction = models.FloatField(default=0.2)
    test_patients = models.JSONField(help_text="pseudo ids")
    folds = models.JSONField(help_text="list of lists of validation patient pseudo ids")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "version"], name="one_split_per_version")]
        ordering = ["dataset", "version"]

    @property
    def n_patients(self) -> int:
        return len(self.test_patients or []) + sum(len(f) for f in self.folds or [])


class TrainingRun(JobState, models.Model):
    """A training run; a finished run is a model version, and a lead may promote one per dataset.
    Its state is its ``train`` job's."""

    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="runs")
    split = models.ForeignKey(DatasetSplit, on_delete=models.RESTRICT, related_name="runs")  # with its dataset only
    name = models.CharField(max_length=200, blank=True)
    preset = models.CharField(max_length=32)
    config = models.JSONField(help_text="The full configuration, stored with the run")
    pretrained = models.CharField(max_length=200, blank=True, help_text="ImageNet weights file used, or '' (random)")
    # PROTECT: a run's state is its job's, so deleting the job (the admin's job list) would leave a finished,
    # promoted model reading "queued" and refused by every verdict; delete the run first
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                            help_text="The train job: fans out the folds, joins them in the aggregation")
    artifacts_dir = models.CharField(max_length=300, blank=True, help_text="Relative to MEDIA_ROOT")
    operating_value = models.FloatField(null=True, blank=True)
    objective = models.CharField(max_length=32, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="Model version number once finished")
    promoted = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # one promoted model per dataset, whatever code writes it (``promote`` also locks the dataset's row)
        constraints = [models.UniqueConstraint(
            fields=["dataset"], condition=models.Q(promoted=True), name="one_promoted_run_per_dataset",
            violation_error_message="another run of this dataset is promoted: promote this one from its run page, "
                                    "which unpromotes the other")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.preset}, {self.status})"

    @property
    def finished_at(self):
        return self.job.finished_at if self.job_id else None

    @property
    def folds_done(self) -> int:
        return self.folds.filter(job__status=Job.Status.SUCCEEDED).count()

    @property
    def weights_pending(self) -> bool:
        """Whether the starting weights are not chosen yet: ``pretrained`` is written when the run's train job
        builds its first model, so before that an 'auto' run's empty ``pretrained`` does not mean random init."""
        chosen = (self.config or {}).get("pretrained", "auto")
        return (not self.pretrained and chosen not in ("", "none", None) and self.is_active
                and not self.folds.filter(job__isnull=False).exists())  # folds are queued after the first model

    @property
    def stage(self) -> str:
        """The status, with ``aggregating`` while the folds are done and their results are being joined."""
        if self.job_id and self.job.status == Job.Status.RUNNING and self.job.awaiting_children \
                and self.folds_done == self.folds.count():
            return "aggregating"
        return self.status


class FoldRun(JobState, models.Model):
    """One cross-validation fold of a run, trained by its ``train_fold`` job."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="folds")
    fold = models.PositiveSmallIntegerField()
    epoch = models.PositiveIntegerField(default=0, help_text="Epochs completed")
    best_epoch = models.IntegerField(null=True, blank=True)
    val_loss = models.FloatField(null=True, blank=True, help_text="Best validation loss")
    history = models.JSONField(default=list, blank=True, help_text="Per-epoch losses and metrics")
    weights = models.CharField(max_length=300, blank=True, help_text="Best weights, relative to MEDIA_ROOT")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="+")  # as the run's

    class Meta:
        ordering = ["run", "fold"]
        constraints = [models.UniqueConstraint(fields=["run", "fold"], name="uniq_run_fold")]

    @property
    def status(self) -> str:
        """Its job's; a fold whose job was never queued shares the ended run's state."""
        if self.job_id:
            return self.job.status
        return self.run.status if self.run.is_finished else Job.Status.QUEUED


class Evaluation(JobState, models.Model):
    """A run's evaluation on its split's test patients, as the ``evaluate --json`` document; stored by its
    ``evaluate`` job when it is done (``job`` is None for one made outside a job, e.g. ``manage.py evaluate``)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="evaluations")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    objective = models.CharField(max_length=32)
    aggregator = models.CharField(max_length=32, default="fraction")
    operating_value = models.FloatField()
    result = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = EvaluationQuerySet.as_manager()
    status_without_job = Job.Status.SUCCEEDED

    class Meta:
        ordering = ["-created_at"]
