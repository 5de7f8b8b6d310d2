"""2.5D images: three consecutive resampled slices of the joined right|left crop as channels."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class Image25D(models.Model):
    series = models.ForeignKey("annotations.Series", on_delete=models.CASCADE, related_name="images25d")
    slice_index = models.PositiveIntegerField(help_text="Index of the centre slice in the resampled crop stack")
    z_mm = models.FloatField(help_text="LPS z of the centre slice, mm")
    file = models.FileField(upload_to="images25d/", max_length=300, help_text="lossless .npy, float16 [3, H, W]")
    thumbnail = models.FileField(upload_to="images25d/thumbs/", max_length=300, blank=True)
    boxes_version = models.CharField(
        max_length=64, help_text="Versions of the boxes it was built from; a mismatch triggers a rebuild"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["series", "slice_index"]
        constraints = [models.UniqueConstraint(fields=["series", "slice_index"], name="uniq_image_slice")]
