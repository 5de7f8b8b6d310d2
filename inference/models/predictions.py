"""Per-scan verdicts from a model version."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from adrenal_site.jobs.models import JobState, JobStateQuerySet
from annotations.models import Dataset, Series


class PredictionQuerySet(JobStateQuerySet):
    def visible_to(self, user) -> PredictionQuerySet:
        """Verdicts on scans of the datasets ``user`` sees, and the verdicts ``user`` asked for on scans they
        submitted (``Series.submitted_by``). Submitting a scan opens the scan to its submitter, not other people's
        verdicts on it: two users who upload the same file share one stored series, and neither sees the other's
        verdict (or learns of the other's model). A verdict asked for on a dataset's scan is the dataset's: one
        removed from the dataset no longer sees it."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        datasets = Dataset.objects.visible_to(user)
        submitted = Series.submitted_by.through.objects.filter(user=user).values("series_id")
        return self.filter(models.Q(series__study__patient__dataset__in=datasets)
                           | models.Q(created_by=user, series_id__in=submitted))


class Prediction(JobState, models.Model):
    """A verdict on one scan, stored by its ``predict`` job (whose state it reads)."""

    class Verdict(models.TextChoices):
        NORMAL = "normal"
        ABNORMAL = "abnormal"
        NOT_ASSESSABLE = "not_assessable", "not assessable"

    series = models.ForeignKey("annotations.Series", on_delete=models.CASCADE, related_name="predictions")
    run = models.ForeignKey("inference.TrainingRun", on_delete=models.RESTRICT, related_name="predictions")  # a run is not deleted under verdicts that stay
    probability = models.FloatField(null=True, blank=True)
    fraction = models.FloatField(null=True, blank=True, help_text="Fraction of 2.5D images voted abnormal")
    operating_value = models.FloatField(null=True, blank=True)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    reason = models.CharField(max_length=300, blank=True, help_text="Why a scan is not assessable")
    sides = models.JSONField(default=dict, blank=True, help_text='{"R": score, "L": score}')
    flagged_slices_mm = models.JSONField(default=list, blank=True)
    slice_scores = models.JSONField(default=list, blank=True, help_text="[[z_mm, probability], ...]")
    score = models.FloatField(null=True, blank=True,
                              help_text="Per-gland runs: the raw scan score (max of the sides' top-k means) that "
                                        "meets the operating value; probability is its calibrated value")
    side_details = models.JSONField(default=dict, blank=True,
                                    help_text='Per-gland runs: {"R": {"score", "probability", "verdict", '
                                              '"flagged_slices_mm", "slice_scores"}, "L": {...}}')
    evidence = models.JSONField(default=list, blank=True,
                                help_text="Class-activation maps of the flagged images in LPS mm "
                                          "(inference.ml.evidence.image_evidence), highest first")
    cautions = models.JSONField(default=list, blank=True,
                                help_text="Why the verdict is less certain than the model's validation (e.g. a "
                                          "voxel size outside its training scans)")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PredictionQuerySet.as_manager()
    status_without_job = JobState.Status.SUCCEEDED

    class Meta:
        ordering = ["-created_at"]
