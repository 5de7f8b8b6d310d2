"""The DICOM node's records: deliveries of studies from a PACS (received by the listener or pulled by
``pacs_retrieve``) with their instances, and the DICOM results (SR, secondary captures) made for a Prediction
with every attempt to deliver them.

Patient identity is not kept here: a received series' header (one instance without pixel data) stays in the
spool (``ADRENAL_DICOM_SPOOL/headers/``), so results can be filed into the patient's study in the PACS while the
study store keeps only its keyed pseudonym.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from adrenal_site.jobs.models import JobState, JobStateQuerySet


class ReceivedStudyQuerySet(JobStateQuerySet):
    def open(self) -> ReceivedStudyQuerySet:
        """Deliveries still receiving instances (not yet handed to a job)."""
        return self.filter(closed_at__isnull=True)


class ReceivedStudy(JobState, models.Model):
    """One delivery of a study: the instances that arrived until none came for ``ADRENAL_DICOM_STABLE_SECONDS``
    (or that one retrieve brought). It is then closed and handed to its ``dicom_study`` job (import, verdicts,
    answer), whose state it reads; instances of the same study arriving later start a new delivery."""

    class Source(models.TextChoices):
        LISTENER = "listener"
        RETRIEVE = "retrieve"

    study_uid = models.CharField(max_length=64, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LISTENER)
    calling_aet = models.CharField(max_length=16, blank=True, help_text="AE title of the sender (or the PACS)")
    peer_address = models.CharField(max_length=100, blank=True, help_text="host:port the instances came from")
    dataset = models.ForeignKey("annotations.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="Where its scans are imported")
    judge = models.BooleanField(default=True, help_text="Queue verdicts (and send results) once imported")
    first_received_at = models.DateTimeField(default=timezone.now)
    last_received_at = models.DateTimeField(default=timezone.now, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Found complete and handed to its job")
    imported_at = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    notes = models.CharField(max_length=500, blank=True, help_text="What the node decided, e.g. no usable scan")

    objects = ReceivedStudyQuerySet.as_manager()

    class Meta:
        ordering = ["-last_received_at", "-id"]
        verbose_name_plural = "received studies"
        constraints = [models.UniqueConstraint(
            fields=["study_uid"], condition=models.Q(closed_at__isnull=True, source="listener"),
            name="one_open_delivery_per_study")]

    def __str__(self) -> str:
        return f"study {self.study_uid} from {self.calling_aet or self.source} (#{self.pk})"

    @property
    def phase(self) -> str:
        """"receiving" until closed, then its job's status."""
        return "receiving" if self.closed_at is None else self.status

    @property
    def folder(self) -> str:
        """Its instances' folder, relative to the spool."""
        return f"incoming/{self.pk}"


class ReceivedInstance(models.Model):
    """One instance of a delivery, written atomically to the spool before it was acknowledged."""

    study = models.ForeignKey(ReceivedStudy, on_delete=models.CASCADE, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64, db_index=True)
    instance_number = models.IntegerField(null=True, blank=True)
    position = models.JSONField(null=True, blank=True, help_text="ImagePositionPatient, LPS mm")
    transfer_syntax = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0, help_text="bytes")
    path = models.CharField(max_length=300, help_text="Relative to the spool")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["study", "series_uid", "instance_number", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "sop_instance_uid"], name="uniq_received_sop")]


class DicomResult(models.Model):
    """A DICOM object made for a Prediction: its Structured Report or one Secondary Capture key image, stored
    under ``MEDIA_ROOT/dicom_results/<prediction>/``. UIDs derive from the prediction, so a rebuild is the same
    object."""

    class Kind(models.TextChoices):
        SR = "sr", "structured report"
        SC = "sc", "secondary capture"

    prediction = models.ForeignKey("inference.Prediction", on_delete=models.CASCADE, related_name="dicom_results")
    kind = models.CharField(max_length=4, choices=Kind.choices)
    sop_class_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    series_uid = models.CharField(max_length=64)
    study_uid = models.CharField(max_length=64)
    file = models.CharField(max_length=300, help_text="Relative to MEDIA_ROOT")
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["prediction", "id"]  # the SR first, then the key images in slice order


class DicomSendQuerySet(models.QuerySet):
    def pending(self) -> DicomSendQuerySet:
        return self.filter(delivered_at__isnull=True, gave_up_at__isnull=True)

    def due(self, now=None) -> DicomSendQuerySet:
        return self.pending().filter(next_attempt_at__lte=now or timezone.now())


class DicomSend(models.Model):
    """Delivery of one result to one destination (``AET@host:port``). Every attempt is appended to ``log``
    (``{"at", "ok", "status", "message"}``); a failed one is retried with backoff (``services.dicom_node.sending``), until
    delivered or ``ADRENAL_DICOM_MAX_ATTEMPTS`` attempts were made."""

    result = models.ForeignKey(DicomResult, on_delete=models.CASCADE, related_name="sends")
    destination = models.CharField(max_length=200)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    log = models.JSONField(default=list, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            help_text="The last dicom_send job that tried it")
    created_at = models.DateTimeField(default=timezone.now)

    objects = DicomSendQuerySet.as_manager()

    class Meta:
        ordering = ["result", "id"]
        constraints = [models.UniqueConstraint(fields=["result", "destination"], name="uniq_send_destination")]

    @property
    def delivery(self) -> str:
        """delivered, gave up, or pending."""
        return "delivered" if self.delivered_at else "gave up" if self.gave_up_at else "pending"

