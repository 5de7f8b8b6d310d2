"""A closed delivery becomes scans of the study store: one header per series kept in the spool, the folder
imported by the store's importer (``annotations.services.importer.import_path``) into the delivery's dataset,
crop boxes proposed and stored (so the verdict, the viewer and the SR use the same boxes), then the scans to
judge listed. Idempotent: a re-delivered job finds the import done (``imported_at``) and lists the same scans."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations.models import Dataset, ImportItem, ImportReport, Series
from annotations.services.importer import import_path
from annotations.services.proposals import propose_series

from ...models import DicomResult, ReceivedInstance, ReceivedStudy
from . import spool

log = logging.getLogger(__name__)


def received_dataset() -> Dataset:
    """The dataset received studies go to (``ADRENAL_DICOM_DATASET``), made on first use."""
    dataset, _ = Dataset.objects.get_or_create(
        name=settings.ADRENAL_DICOM_DATASET,
        defaults={"description": "Studies the DICOM node received from the PACS"})
    return dataset


def close_delivery(delivery: ReceivedStudy) -> None:
    """Mark a delivery complete (no more instances go into it)."""
    ReceivedStudy.objects.filter(pk=delivery.pk, closed_at__isnull=True).update(closed_at=timezone.now())
    delivery.refresh_from_db()


def _save_headers(delivery: ReceivedStudy) -> int:
    """Keep one header per series of the delivery (the first instance still on disk)."""
    kept = 0
    for series_uid in delivery.instances.values_list("series_uid", flat=True).distinct():
        for inst in delivery.instances.filter(series_uid=series_uid).order_by("instance_number", "id"):
            path = spool.root() / inst.path
            if path.exists():
                spool.save_header(path)
                kept += 1
                break
    return kept


def import_delivery(delivery: ReceivedStudy, *, job=None, user=None,
                    progress: Callable[[float, str], None] | None = None) -> ImportReport | None:
    """Import a closed delivery once (headers kept, volumes stored, boxes proposed), then remove its spooled
    instances. Returns the import report (None when it was imported before)."""
    if delivery.closed_at is None:
        raise ValueError(f"delivery #{delivery.pk} is still receiving")
    if delivery.imported_at is not None:
        return None
    folder = spool.root() / delivery.folder
    dataset = delivery.dataset or received_dataset()
    if delivery.dataset_id is None:
        ReceivedStudy.objects.filter(pk=delivery.pk).update(dataset=dataset)
        delivery.dataset = dataset
    _save_headers(delivery)
    source = f"DICOM node spool: {delivery.folder}"  # relative to ADRENAL_DICOM_SPOOL, which each host sets
    if job is not None:
        report, _ = ImportReport.objects.get_or_create(job=job, defaults={"dataset": dataset, "source": source})
    else:
        report = None
    report = import_path(dataset, folder, progress=progress, user=user, report=report, source=source)
    imported = Series.objects.filter(pk__in=report.items.filter(status=ImportItem.Status.IMPORTED)
                                     .values("series_id"), is_scan=True)
    if imported.exists():
        propose_series(imported.select_related("study__patient", "volume"))
    counts = report.counts()
    reasons = "; ".join(f"{i.path}: {i.reason}" for i in report.items.exclude(status=ImportItem.Status.IMPORTED)
                        if i.reason)
    notes = f"{counts.get('imported', 0)} imported, {counts.get('skipped', 0)} skipped, " \
            f"{counts.get('failed', 0)} failed" + (f" ({reasons})" if reasons else "")
    with transaction.atomic():
        ReceivedStudy.objects.filter(pk=delivery.pk).update(imported_at=timezone.now(), notes=notes[:500])
    delivery.refresh_from_db()
    shutil.rmtree(folder, ignore_errors=True)  # the volumes are stored and the headers kept
    return report


def scans_to_judge(delivery: ReceivedStudy) -> tuple[list[Series], list[str]]:
    """The delivery's CT scans with a volume in its dataset that no DICOM result answered yet, and notes on the
    ones left out (already answered)."""
    uids = set(delivery.instances.values_list("series_uid", flat=True))
    scans, notes = [], []
    qs = Series.objects.filter(study__patient__dataset_id=delivery.dataset_id, series_uid__in=uids, is_scan=True,
                               volume__isnull=False).select_related("study__patient__dataset", "volume")
    for series in qs.order_by("pk"):
        if DicomResult.objects.filter(prediction__series=series).exists():
            notes.append(f"series {series.series_uid} was answered before")
            continue
        scans.append(series)
    return scans, notes


def source_instances(series: Series):
    """The received instances of a series (latest delivery's row per SOP instance), for result references; of a
    part of a series the import split (``<uid>#acq2``), the part's own instances only."""
    rows = {}
    received = ReceivedInstance.objects.filter(series_uid=series.dicom_series_uid,
                                               study__study_uid=series.study.study_uid)
    if series.is_part:
        received = received.filter(sop_instance_uid__in=series.instances.values("key"))
    for row in received.order_by("id"):
        rows[row.sop_instance_uid] = row
    return sorted(rows.values(), key=lambda r: (r.position[2] if r.position else 0.0, r.sop_instance_uid))
