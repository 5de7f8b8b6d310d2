"""Datasets, their members, pseudonymous patients and studies."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from adrenal_site.roles import ADMIN, has_role


class DatasetQuerySet(models.QuerySet):
    def visible_to(self, user) -> DatasetQuerySet:
        """Admins see every dataset; everyone else only those they are members of."""
        if has_role(user, ADMIN):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(members=user)


class Dataset(models.Model):
    class SeriesRule(models.TextChoices):
        ALL = "all", "Every usable CT series is a scan"
        THINNEST = "thinnest", "Thinnest axial soft-tissue series per study"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="datasets")
    series_rule = models.CharField(max_length=16, choices=SeriesRule.choices, default=SeriesRule.ALL)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Patient(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="patients")
    pseudo_id = models.CharField(max_length=64, help_text="Pseudonymous id shown everywhere")
    # Admin-only: a keyed hash of the source PatientID, so re-imports find the same patient
    # without the identifier itself being stored.
    source_key = models.CharField(max_length=128, blank=True, db_index=True)

    class Meta:
        ordering = ["dataset", "pseudo_id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "pseudo_id"], name="uniq_patient_pseudo_id")]

    def __str__(self) -> str:
        return self.pseudo_id

    @property
    def label(self) -> str | None:
        current = self.labels.filter(series__isnull=True, is_current=True).first()
        return current.value if current else None


class Study(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="studies")
    study_uid = models.CharField(max_length=128, db_index=True)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.CharField(max_length=32, blank=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["patient", "study_date", "id"]
        verbose_name_plural = "studies"
        constraints = [models.UniqueConstraint(fields=["patient", "study_uid"], name="uniq_study_uid")]

    def __str__(self) -> str:
        return f"{self.patient} {self.description or self.study_uid}"
