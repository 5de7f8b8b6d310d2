"""Counts shown for a dataset: patients, studies, scans and current patient labels."""
from __future__ import annotations

from django.db.models import Count

from ..models import Dataset, Label, Patient, Series, Study


def dataset_counts(dataset: Dataset) -> dict[str, int]:
    labels = dict(
        Label.objects.filter(patient__dataset=dataset, series__isnull=True, is_current=True)
        .values_list("value").annotate(n=Count("id"))
    )
    return {
        "patients": Patient.objects.filter(dataset=dataset).count(),
        "studies": Study.objects.filter(patient__dataset=dataset).count(),
        "scans": Series.objects.filter(study__patient__dataset=dataset, is_scan=True, volume__isnull=False).count(),
        "series": Series.objects.filter(study__patient__dataset=dataset).count(),
        "normal": labels.get(Label.Value.NORMAL, 0),
        "abnormal": labels.get(Label.Value.ABNORMAL, 0),
    }
