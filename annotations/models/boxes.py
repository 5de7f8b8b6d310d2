"""Crop boxes around each adrenal gland, in LPS millimetres, versioned."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class CropBox(models.Model):
    """An axis-aligned box in patient LPS millimetres for one side of one series.

    ``version`` increases on every save; a client must send the version it edited, and a stale
    version is refused (HTTP 409) so no update is lost silently.
    """

    class Side(models.TextChoices):
        RIGHT = "R", "patient right"
        LEFT = "L", "patient left"

    class Status(models.TextChoices):
        PROPOSED = "proposed"
        CONFIRMED = "confirmed"

    series = models.ForeignKey("annotations.Series", on_delete=models.CASCADE, related_name="boxes")
    side = models.CharField(max_length=1, choices=Side.choices)
    lps_min = models.JSONField(help_text="[x, y, z] mm, LPS")
    lps_max = models.JSONField(help_text="[x, y, z] mm, LPS")
    voxel_min = models.JSONField(help_text="[i, j, k] inclusive")
    voxel_max = models.JSONField(help_text="[i, j, k] inclusive")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    source = models.CharField(max_length=32, default="ui", help_text="ui, atlas, landmarks, mask, csv")
    version = models.PositiveIntegerField(default=1)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["series", "side"]
        constraints = [models.UniqueConstraint(fields=["series", "side"], name="uniq_box_side")]

    def __str__(self) -> str:
        return f"{self.series_id} {self.side} v{self.version} {self.status}"


class CropBoxVersion(models.Model):
    """Every saved state of a box, for history and undo."""

    box = models.ForeignKey(CropBox, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    lps_min = models.JSONField()
    lps_max = models.JSONField()
    status = models.CharField(max_length=16)
    source = models.CharField(max_length=32)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["box", "-version"]
        constraints = [models.UniqueConstraint(fields=["box", "version"], name="uniq_box_version")]
