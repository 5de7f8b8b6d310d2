"""Normal/abnormal labels per patient, optionally overridden per series, with full history."""
from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from adrenal_site.locking import lock


CURRENT_TWICE = ("this patient (or series) already has a current label: change the label on the patient's page, "
                 "which keeps the earlier one as history, or save this one as not current")


class Label(models.Model):
    """A label assignment. The current one has ``is_current``; older ones stay as history."""

    class Value(models.TextChoices):
        NORMAL = "normal"
        ABNORMAL = "abnormal"

    class Source(models.TextChoices):
        FOLDER = "folder"
        CSV = "csv"
        UI = "ui"

    # which adrenal is abnormal: the stored values of ``side`` with what the pages call them
    SIDES = {"": "side not known", "none": "none", "R": "right", "L": "left", "RL": "both"}

    patient = models.ForeignKey("annotations.Patient", on_delete=models.CASCADE, related_name="labels")
    series = models.ForeignKey(
        "annotations.Series", null=True, blank=True, on_delete=models.CASCADE, related_name="labels"
    )
    value = models.CharField(max_length=16, choices=Value.choices)
    side = models.CharField(max_length=4, blank=True, default="",
                            help_text="Which adrenal is abnormal when known: 'R', 'L', 'RL' or 'none'; '' = not known")
    source = models.CharField(max_length=16, choices=Source.choices)
    note = models.CharField(max_length=300, blank=True)
    is_current = models.BooleanField(default=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        # one current label per patient (and per series, for a series' own label), whatever code writes them;
        # ``assign`` serialises its own writes under the patient's row lock
        constraints = [
            models.UniqueConstraint(fields=["patient"], condition=Q(is_current=True, series__isnull=True),
                                    name="one_current_patient_label", violation_error_message=CURRENT_TWICE),
            models.UniqueConstraint(fields=["patient", "series"], condition=Q(is_current=True, series__isnull=False),
                                    name="one_current_series_label", violation_error_message=CURRENT_TWICE),
        ]

    def __str__(self) -> str:
        return f"{self.patient} {self.value} ({self.source})"

    @classmethod
    def check_side(cls, value: str, side: str | None) -> str:
        """``side`` as stored for a label of ``value``: '' (not known), 'none', 'R', 'L' or 'RL'. Raises
        ValueError when it is none of these or contradicts ``value`` (a normal label with an abnormal side, an
        abnormal one with none). The one check of the API and the label page."""
        side = side or ""
        if side not in cls.SIDES:
            raise ValueError(f"side must be R, L, RL, none or '' (not known), not {side!r}")
        if value == cls.Value.NORMAL and side not in ("", "none"):
            raise ValueError(f"a normal label has no abnormal side (got {side!r})")
        if value == cls.Value.ABNORMAL and side == "none":
            raise ValueError("an abnormal label needs R, L, RL or '' (not known)")
        return side

    @property
    def side_display(self) -> str:
        return self.SIDES.get(self.side, self.side)

    @classmethod
    def assign(cls, patient, value: str, source: str, *, series=None, user=None, note: str = "",
               side: str = "") -> Label:
        """Make ``value`` (and ``side``: which glands are abnormal, '' when not known) current, keeping earlier
        labels as history; no-op if both are already current. Under the patient's row lock, so two edits at
        once leave one current label (the later one), not two."""
        with transaction.atomic():
            lock(type(patient), patient.pk)
            current = cls.objects.filter(patient=patient, series=series, is_current=True).first()
            if current and current.value == value and current.side == side:
                return current
            cls.objects.filter(patient=patient, series=series, is_current=True).update(is_current=False)
            return cls.objects.create(
                patient=patient, series=series, value=value, side=side, source=source, created_by=user, note=note
            )
