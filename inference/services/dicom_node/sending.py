"""Delivering results to the PACS: one ``DicomSend`` per result and destination, C-STORE over one association
per destination, every attempt appended to the send's log. A failed attempt is retried after
``retry_delay(attempts)`` (``ADRENAL_DICOM_RETRY_SECONDS`` doubled each time, at most an hour) until
``ADRENAL_DICOM_MAX_ATTEMPTS``; the listener's scheduler queues the ``dicom_send`` jobs that retry."""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ...models import DicomResult, DicomSend, Prediction
from . import scu
from .answers import result_path
from .config import Peer, parse_peer

log = logging.getLogger(__name__)


def retry_delay(attempts: int, base_s: float | None = None) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: the base doubled each time, at most an hour."""
    base = float(settings.ADRENAL_DICOM_RETRY_SECONDS if base_s is None else base_s)
    return timedelta(seconds=min(3600.0, base * 2 ** max(0, attempts - 1)))


def queue_sends(results: list[DicomResult], destination: Peer, job=None) -> list[DicomSend]:
    """One pending send per result to ``destination`` (existing ones are kept), due now, held by ``job`` (so
    the scheduler leaves them to it)."""
    sends = []
    for result in results:
        send, _ = DicomSend.objects.get_or_create(result=result, destination=str(destination), defaults={
            "next_attempt_at": timezone.now(), "job": job})
        sends.append(send)
    return sends


def _attempt(send: DicomSend, ok: bool, status: int | None, message: str, job=None) -> None:
    now = timezone.now()
    with transaction.atomic():
        row = DicomSend.objects.select_for_update().get(pk=send.pk)
        if row.delivered_at is not None:
            return
        row.attempts += 1
        row.log = [*row.log, {"at": now.isoformat(), "ok": ok, "status": status, "message": message[:300]}]
        if job is not None:
            row.job = job
        if ok:
            row.delivered_at, row.next_attempt_at, row.last_error = now, None, ""
        else:
            row.last_error = message[:500]
            if row.attempts >= int(settings.ADRENAL_DICOM_MAX_ATTEMPTS):
                row.gave_up_at, row.next_attempt_at = now, None
            else:
                row.next_attempt_at = now + retry_delay(row.attempts)
        row.save()
    send.refresh_from_db()


def deliver(sends: list[DicomSend], job=None) -> dict[str, int]:
    """Try each pending send once (one association per destination). Returns ``{"delivered", "failed"}``."""
    counts = {"delivered": 0, "failed": 0}
    by_destination: dict[str, list[DicomSend]] = defaultdict(list)
    for send in sends:
        if send.delivered_at is None and send.gave_up_at is None:
            by_destination[send.destination].append(send)
    for destination, group in by_destination.items():
        files = {result_path(s.result): s for s in group}
        try:
            outcomes = scu.store(parse_peer(destination, "destination"), list(files))
        except (scu.AssociationFailed, OSError, ValueError) as exc:
            for send in group:
                _attempt(send, False, None, str(exc), job)
            counts["failed"] += len(group)
            log.warning("results to %s not delivered: %s", destination, exc)
            continue
        for path, status, message in outcomes:
            ok = scu.is_success(status)
            _attempt(files[path], ok, status, message, job)
            counts["delivered" if ok else "failed"] += 1
    return counts


def pending_sends(prediction: Prediction, due_only: bool = True) -> list[DicomSend]:
    qs = DicomSend.objects.filter(result__prediction=prediction).select_related("result")
    qs = qs.due() if due_only else qs.pending()
    return list(qs.order_by("result__kind", "pk"))


def sends_log(prediction: Prediction) -> list[dict]:
    """Every send of a prediction's results with its attempts (the API's and the page's view of it)."""
    out = []
    for send in DicomSend.objects.filter(result__prediction=prediction).select_related("result").order_by("pk"):
        out.append({"result": send.result.sop_instance_uid, "kind": send.result.kind, "destination": send.destination,
                    "delivery": send.delivery, "attempts": send.attempts, "delivered_at": send.delivered_at,
                    "next_attempt_at": send.next_attempt_at, "last_error": send.last_error, "log": send.log})
    return out
