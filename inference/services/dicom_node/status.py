"""The node at a glance for admins (home page): its settings, what it is receiving and working on, deliveries
of results waiting or given up, and when it last received an instance and last delivered a result."""
from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Max

from adrenal_site.jobs.models import Job

from ...models import DicomSend, ReceivedInstance, ReceivedStudy
from .config import ConfigError, parse_peers, results_destination


def node_summary(recent: int = 5) -> dict:
    """``{"aet", "port", "peers", "results_to", "receiving", "working", "failed", "sends_pending",
    "sends_given_up", "last_instance_at", "last_delivered_at", "recent": [ReceivedStudy with .n_instances]}``."""
    try:
        peers = ", ".join(map(str, parse_peers(settings.ADRENAL_DICOM_PEERS))) or "none"
        destination = results_destination()
        results_to = str(destination) if destination else "the sending peer"
    except ConfigError as exc:
        peers, results_to = f"invalid: {exc}", "?"
    deliveries = ReceivedStudy.objects.all()
    return {
        "aet": settings.ADRENAL_DICOM_AET, "port": settings.ADRENAL_DICOM_PORT, "peers": peers,
        "results_to": results_to,
        "receiving": deliveries.open().count(),
        "working": deliveries.filter(closed_at__isnull=False, job__status__in=Job.ACTIVE).count(),
        "failed": deliveries.filter(job__status=Job.Status.FAILED).count(),
        "sends_pending": DicomSend.objects.pending().count(),
        "sends_given_up": DicomSend.objects.filter(gave_up_at__isnull=False).count(),
        "last_instance_at": ReceivedInstance.objects.aggregate(t=Max("received_at"))["t"],
        "last_delivered_at": DicomSend.objects.aggregate(t=Max("delivered_at"))["t"],
        "recent": list(deliveries.select_related("job").annotate(n_instances=Count("instances"))[:recent]),
    }
