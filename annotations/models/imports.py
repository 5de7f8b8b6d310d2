"""Import reports: one row per file or series, imported, skipped or failed, with the reason."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class ImportReport(models.Model):
    dataset = models.ForeignKey("annotations.Dataset", on_delete=models.CASCADE, related_name="imports")
    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="import_report")
    source = models.CharField(max_length=1000, help_text="Folder or uploaded file name")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def counts(self) -> dict[str, int]:
        return {s: self.items.filter(status=s).count() for s in ImportItem.Status.values}


MAX_REASON_CHARS = 5000  # whole notes (passes, exclusions, tilt, reorientation) fit; a runaway message does not


class ImportItem(models.Model):
    class Status(models.TextChoices):
        IMPORTED = "imported"
        SKIPPED = "skipped"
        FAILED = "failed"

    report = models.ForeignKey(ImportReport, on_delete=models.CASCADE, related_name="items")
    path = models.CharField(max_length=1000)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.TextField(blank=True, help_text=f"why, with the scan's notes; at most {MAX_REASON_CHARS} "
                                                    "characters")
    series = models.ForeignKey("annotations.Series", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["id"]
