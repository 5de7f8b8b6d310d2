"""The listener's clock, run every second or so by ``manage.py dicom_listener`` next to its Storage SCP:

- a listener delivery that got no instance for ``ADRENAL_DICOM_STABLE_SECONDS`` is closed and handed to a
  ``dicom_study`` job (``start_study``), in one transaction with the close;
- results whose delivery is due again (after a failed attempt) and that no active job holds get a
  ``dicom_send`` job (``start_send``).

All state is in the database: a restarted listener picks up where the last one stopped, and gives deliveries
left open a fresh stable window (``grace_after_restart``). The job starters are
passed in (``inference.tasks``), so this module does not import the task layer above it."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from adrenal_site.jobs.models import Job

from ...models import DicomSend, ReceivedStudy

log = logging.getLogger(__name__)


def grace_after_restart() -> int:
    """At listener start: give deliveries left open a fresh stable window, since the sender may have been
    failing against the stopped listener and will retry (a stopped listener is not a quiet study)."""
    return ReceivedStudy.objects.open().filter(source=ReceivedStudy.Source.LISTENER).update(
        last_received_at=timezone.now())


def close_quiet_deliveries(stable_s: float, start_study: Callable[[ReceivedStudy], Job]) -> list[int]:
    """Close listener deliveries quiet for ``stable_s`` seconds and queue their jobs; returns their ids."""
    cutoff = timezone.now() - timedelta(seconds=stable_s)
    closed = []
    candidates = ReceivedStudy.objects.open().filter(source=ReceivedStudy.Source.LISTENER,
                                                     last_received_at__lte=cutoff)
    for pk in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            delivery = (ReceivedStudy.objects.select_for_update()
                        .filter(pk=pk, closed_at__isnull=True, last_received_at__lte=cutoff).first())
            if delivery is None:  # an instance arrived meanwhile
                continue
            delivery.closed_at = timezone.now()
            delivery.job = start_study(delivery)
            delivery.save(update_fields=["closed_at", "job"])
            closed.append(pk)
            log.info("study %s complete (%d instances from %s): job #%s", delivery.study_uid,
                     delivery.instances.count(), delivery.calling_aet, delivery.job_id)
    return closed


def requeue_due_sends(start_send: Callable[[int], Job]) -> list[int]:
    """Queue one ``dicom_send`` job per prediction with sends due and not held by an active job; returns the
    prediction ids."""
    free = Q(job__isnull=True) | ~Q(job__status__in=Job.ACTIVE)
    predictions = sorted(set(DicomSend.objects.due().filter(free).values_list("result__prediction_id", flat=True)))
    started = []
    for prediction_id in predictions:
        with transaction.atomic():
            rows = list(DicomSend.objects.select_for_update(of=("self",)).due()
                        .filter(free, result__prediction_id=prediction_id))
            if not rows:
                continue
            job = start_send(prediction_id)
            DicomSend.objects.filter(pk__in=[r.pk for r in rows]).update(job=job)
            started.append(prediction_id)
    return started


def tick(stable_s: float, start_study: Callable[[ReceivedStudy], Job], start_send: Callable[[int], Job]) -> dict:
    """One turn of the clock."""
    return {"closed": close_quiet_deliveries(stable_s, start_study), "resent": requeue_due_sends(start_send)}
