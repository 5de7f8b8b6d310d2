"""Crop boxes around each adrenal gland, in LPS millimetres, versioned."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

# the proposers' methods (``inference.ml.proposals`` SideProposal.method) in a reader's words
METHOD_WORDS = {"atlas": "atlas registration", "atlas-level": "atlas level match (gland not block-matched)",
                "landmarks": "lung-base and spine landmarks", "mask": "TotalSegmentator masks"}


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
    source = models.CharField(max_length=32, default="ui",
                              help_text="how the box was made: ui, csv, or the proposer's method (atlas, atlas-level, "
                                        "landmarks, mask)")
    confidence = models.FloatField(null=True, blank=True,
                                   help_text="proposals: 0-1, how well and how consistently the proposer matched (for "
                                             "ranking review, not a probability); null for boxes a person drew")
    note = models.CharField(max_length=300, blank=True,
                            help_text="proposals: what qualifies the box (widened for a lesion, clipped at the "
                                      "scan's end)")
    version = models.PositiveIntegerField(default=1)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["series", "side"]
        constraints = [models.UniqueConstraint(fields=["series", "side"], name="uniq_box_side")]

    def __str__(self) -> str:
        return f"{self.series_id} {self.side} v{self.version} {self.status}"

    @property
    def provenance(self) -> str:
        """Who or what made the box, in a reader's words: ``"proposed by atlas registration, confidence 0.82"``,
        ``"drawn or edited by hand"``."""
        return box_provenance(self.source, self.confidence)


def box_provenance(source: str, confidence: float | None) -> str:
    """``"proposed by atlas registration, confidence 0.82"`` for a proposer's method, ``"drawn or edited by hand"`` for
    ``ui``, ``"from a crop table"`` for ``csv``."""
    if source == "ui":
        return "drawn or edited by hand"
    if source == "csv":
        return "from a crop table"
    words = f"proposed by {METHOD_WORDS.get(source, source)}"
    return f"{words}, confidence {confidence:.2f}" if confidence is not None else words


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
    confidence = models.FloatField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
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
