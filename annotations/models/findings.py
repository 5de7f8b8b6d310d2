"""Per-side findings a clinician records beside the crop boxes: whether the adrenal gland is seen, an optional
lesion marker (centre in LPS mm and diameter in mm) and a free-text comment, versioned like the boxes."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .boxes import CropBox


class Gland(models.TextChoices):
    """What the reader sees of the adrenal gland on one side."""

    SEEN = "seen", "gland seen"
    NOT_VISUALISED = "not_visualised", "gland not visualised"
    ABSENT = "absent", "gland absent (e.g. after adrenalectomy)"


class SideFinding(models.Model):
    """The current findings of one side of one series. ``version`` increases on every save; a client sends the
    version it edited and a stale one is refused (HTTP 409), as for boxes.

    The lesion marker is a sphere: ``lesion_centre_lps`` ``[x, y, z]`` mm and ``lesion_diameter_mm`` (the
    longest axial diameter, as measured across the lesion); both are null when no lesion is marked.
    """

    series = models.ForeignKey("annotations.Series", on_delete=models.CASCADE, related_name="findings")
    side = models.CharField(max_length=1, choices=CropBox.Side.choices)
    gland = models.CharField(max_length=16, choices=Gland.choices, default=Gland.SEEN)
    lesion_centre_lps = models.JSONField(null=True, blank=True, help_text="[x, y, z] mm, LPS")
    lesion_diameter_mm = models.FloatField(null=True, blank=True)
    comment = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["series", "side"]
        constraints = [models.UniqueConstraint(fields=["series", "side"], name="uniq_finding_side")]

    def __str__(self) -> str:
        return f"{self.series_id} {self.side} v{self.version} {self.gland}"


class SideFindingVersion(models.Model):
    """Every saved state of a side's findings."""

    finding = models.ForeignKey(SideFinding, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    gland = models.CharField(max_length=16, choices=Gland.choices)
    lesion_centre_lps = models.JSONField(null=True, blank=True)
    lesion_diameter_mm = models.FloatField(null=True, blank=True)
    comment = models.TextField(blank=True)
    restored_from = models.PositiveIntegerField(null=True, blank=True, help_text="the version this one restores")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["finding", "-version"]
        constraints = [models.UniqueConstraint(fields=["finding", "version"], name="uniq_finding_version")]
