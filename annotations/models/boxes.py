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
    """Every saved state of a box, for history, undo and redo.

    Undo and redo walk a tree of *states*: an edit (``action`` edit or confirm) makes a new state whose
    ``parent_state`` is the state it was made from; undo, redo and restore make a version that copies an earlier
    state (``state`` is that state's version, ``restored_from`` the version picked). Undo goes to the parent of the
    current state, redo to the newest edit made from it (``annotations.services.boxes``).
    """

    class Action(models.TextChoices):
        EDIT = "edit"
        CONFIRM = "confirm"
        UNDO = "undo"
        REDO = "redo"
        RESTORE = "restore"

    box = models.ForeignKey(CropBox, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    lps_min = models.JSONField()
    lps_max = models.JSONField()
    status = models.CharField(max_length=16)
    source = models.CharField(max_length=32)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.EDIT)
    state = models.PositiveIntegerField(null=True, blank=True,
                                        help_text="the edit version whose box this version holds (itself for edits)")
    parent_state = models.PositiveIntegerField(null=True, blank=True,
                                               help_text="for edits: the state the edit was made from")
    restored_from = models.PositiveIntegerField(null=True, blank=True,
                                                help_text="for undo, redo and restore: the version copied")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["box", "-version"]
        constraints = [models.UniqueConstraint(fields=["box", "version"], name="uniq_box_version")]
