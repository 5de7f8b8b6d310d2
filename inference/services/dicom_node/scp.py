"""The Storage SCP of ``manage.py dicom_listener`` (pynetdicom).

- Associations are accepted only from the peers of ``ADRENAL_DICOM_PEERS`` (AE title and host); any other is
  refused at association (A-ASSOCIATE-RJ, permanent, "calling AE title not recognised").
- C-ECHO is answered; C-STORE accepts CT (CT, Enhanced CT, Legacy Converted Enhanced CT) in uncompressed,
  deflated, JPEG (baseline, extended, lossless), JPEG-LS, JPEG 2000 and RLE transfer syntaxes; every other
  SOP class is refused per presentation context.
- An instance is written atomically into its delivery's spool folder and recorded (``ReceivedInstance``, the
  delivery's ``last_received_at``) in one transaction *before* success is answered, so an acknowledged instance
  survives a killed listener; the same instance sent again overwrites itself.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pynetdicom
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    LegacyConvertedEnhancedCTImageStorage,
    RLELossless,
)
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from inference.ml.dicom.headers import finite_numbers, instance_number

from ...models import ReceivedInstance, ReceivedStudy
from . import spool
from .config import Peer

log = logging.getLogger(__name__)

CT_STORAGE = (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage)
TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                     ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
                     JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless]
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
REJECT_PERMANENT, SERVICE_USER, CALLING_AET_NOT_RECOGNISED = 0x01, 0x01, 0x03


MAX_UID_CHARS = 64

# a received C-STORE data set goes to a temporary file as its fragments arrive, not into memory (pynetdicom keeps a
# whole instance in memory otherwise, however large); the handlers read its header from the file and copy it
pynetdicom._config.STORE_RECV_CHUNKED_DATASET = True


def max_instance_bytes() -> int:
    """The largest instance the node takes (``ADRENAL_DICOM_MAX_INSTANCE_BYTES``; default: the largest image any
    reader builds, ``ADRENAL_MAX_VOXELS`` at 2 bytes a voxel, plus 16 MB of header)."""
    configured = getattr(settings, "ADRENAL_DICOM_MAX_INSTANCE_BYTES", None)
    if configured:
        return int(configured)
    return 2 * int(getattr(settings, "ADRENAL_MAX_VOXELS", 200_000_000)) + 16 * 1024**2


def _received_file(event) -> Path | None:
    """The temporary file pynetdicom wrote the data set to (None when it kept it in memory)."""
    try:
        return Path(event.dataset_path)
    except (AttributeError, TypeError):
        return None


def failure(status: int, comment: str) -> Dataset:
    """A C-STORE failure status with its reason (Error Comment, 64 characters), shown in the sender's log."""
    ds = Dataset()
    ds.Status, ds.ErrorComment = status, comment[:64]
    return ds


def parse_store(event) -> dict | int | Dataset:
    """The fields of a C-STORE request (``save_instance`` keyword arguments), or the failure status to answer.
    An instance over ``max_instance_bytes()`` is refused for good, naming its size, before its header is read."""
    path = _received_file(event)
    if path is not None:
        size, limit = path.stat().st_size, max_instance_bytes()
        if size > limit:
            comment = f"instance of {size / 1e6:.1f} MB over the node's {limit / 1e6:.1f} MB"
            log.warning("C-STORE refused: %s", comment)
            return failure(CANNOT_UNDERSTAND, comment)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True) if path is not None else event.dataset
        fields = {"study_uid": str(ds.StudyInstanceUID), "series_uid": str(ds.SeriesInstanceUID),
                  "sop_uid": str(ds.SOPInstanceUID)}
    except Exception as exc:  # noqa: BLE001 - a dataset we cannot read is refused, the batch goes on
        log.warning("C-STORE refused: unreadable dataset (%s)", exc)
        return CANNOT_UNDERSTAND
    if not all(fields.values()):
        log.warning("C-STORE refused: instance without Study/Series/SOP Instance UID")
        return CANNOT_UNDERSTAND
    names = {"study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID", "sop_uid": "SOPInstanceUID"}
    too_long = [names[k] for k, v in fields.items() if len(v) > MAX_UID_CHARS]
    if too_long:
        # a permanent refusal naming it: recorded (64-character columns) it failed on PostgreSQL with 0xA700, which a
        # PACS retries for ever, and no result could be filed back (a UID over 64 characters is not DICOM)
        comment = f"{', '.join(too_long)} over {MAX_UID_CHARS} characters"
        log.warning("C-STORE %s", comment)
        return failure(CANNOT_UNDERSTAND, comment)
    fields.update(sop_class_uid=str(event.context.abstract_syntax), transfer_syntax=str(event.context.transfer_syntax),
                  data=path if path is not None else event.encoded_dataset(include_meta=True), **bookkeeping(ds))
    return fields


def bookkeeping(ds: Dataset) -> dict:
    """An instance's ``instance_number`` and ``position`` (``save_instance`` keyword arguments), read as the
    importer reads them: a position or number that is not one (NaN, 'abc', '1.5') is None here and the importer's
    business later, never a refused instance the PACS retries."""
    position = finite_numbers(ds.get("ImagePositionPatient"), 3)
    return {"instance_number": instance_number(ds), "position": list(position) if position else None}


def save_instance(delivery: ReceivedStudy, *, study_uid: str, series_uid: str, sop_uid: str, sop_class_uid: str,
                  transfer_syntax: str, data: bytes | Path, instance_number=None, position=None) -> ReceivedInstance:
    """Write one instance (a whole DICOM file: its bytes, or the file pynetdicom received it into) atomically
    into ``delivery``'s spool folder and record it; the same instance again overwrites itself. Call inside the
    caller's transaction when ordering matters."""
    now = timezone.now()
    relative = spool.instance_path(delivery.folder, series_uid, sop_uid)
    size = spool.write_instance(relative, data)
    row, _ = ReceivedInstance.objects.update_or_create(
        study=delivery, sop_instance_uid=sop_uid,
        defaults={"sop_class_uid": sop_class_uid, "series_uid": series_uid, "path": relative,
                  "instance_number": instance_number, "position": position, "size": size,
                  "transfer_syntax": transfer_syntax, "received_at": now})
    ReceivedStudy.objects.filter(pk=delivery.pk).update(last_received_at=now)
    return row


def record_instance(*, calling_aet: str, address: str, **fields) -> ReceivedInstance:
    """Save a listener's instance into the open delivery of its study (opened here when there is none), under
    that delivery's row lock so the scheduler cannot close it half-way. Raises on a storage or database failure
    (the caller then answers a failure status: the sender keeps the instance and retries)."""
    for _ in range(3):
        try:
            with transaction.atomic():
                delivery = (ReceivedStudy.objects.select_for_update()
                            .filter(study_uid=fields["study_uid"], source=ReceivedStudy.Source.LISTENER,
                                    closed_at__isnull=True).first())
                if delivery is None:
                    now = timezone.now()
                    delivery = ReceivedStudy.objects.create(study_uid=fields["study_uid"], calling_aet=calling_aet,
                                                            peer_address=address, first_received_at=now,
                                                            last_received_at=now)
                return save_instance(delivery, **fields)
        except IntegrityError:  # another association opened the delivery at the same moment: join it
            continue
    raise RuntimeError(f"could not record instance {fields.get('sop_uid')} of study {fields.get('study_uid')}")


def refuse_strangers(event, peers: list[Peer], why: str) -> None:
    """An EVT_REQUESTED handler's work: an association from no peer of ``peers`` (AE title and host) is refused at
    association (A-ASSOCIATE-RJ, permanent, "calling AE title not recognised"), logged with ``why``."""
    aet = str(event.assoc.requestor.primitive.calling_ae_title).strip()
    address = event.assoc.requestor.address
    if any(p.matches(aet, address) for p in peers):
        return
    log.warning("refused association from %r at %s: %s", aet, address, why)
    event.assoc.acse.send_reject(REJECT_PERMANENT, SERVICE_USER, CALLING_AET_NOT_RECOGNISED)
    event.assoc.kill()  # returns once the A-ASSOCIATE-RJ is out (as pynetdicom's own rejections do)


def store_handler(delivery: ReceivedStudy):
    """A C-STORE handler saving every instance into ``delivery`` (C-GET and C-MOVE retrieves). The temporary file
    pynetdicom received the instance into is removed once handled: on a C-GET's own association pynetdicom leaves
    it (only its Storage SCP service removes it), so each retrieve left a copy of every instance, the patient's
    identity with it, in the system's temporary folder."""

    def handle(event) -> int:
        try:
            fields = parse_store(event)
            if not isinstance(fields, dict):  # the failure status to answer
                return fields
            try:
                save_instance(delivery, **fields)
            except Exception:  # noqa: BLE001
                log.exception("could not store retrieved instance %s", fields["sop_uid"])
                return OUT_OF_RESOURCES
            finally:
                connection.close()
            return SUCCESS
        finally:
            received = _received_file(event)
            if received is not None:
                received.unlink(missing_ok=True)

    return handle


class StorageSCP:
    """The listener's AE: ``start()`` serves in background threads until ``stop()``."""

    def __init__(self, *, aet: str, port: int, peers: list[Peer], bind: str = "127.0.0.1"):
        self.aet, self.port, self.peers, self.bind = aet, port, list(peers), bind
        self.server = None
        self.ae = AE(ae_title=aet)
        self.ae.add_supported_context(Verification)
        for sop_class in CT_STORAGE:
            self.ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        # pynetdicom's own check of the title too (a title no AE can have when there are no peers)
        self.ae.require_calling_aet = [p.aet for p in self.peers] or ["-no-peers-"]
        self.ae.maximum_pdu_size = 0  # no limit: large CT instances in few PDUs

    # -- handlers ------------------------------------------------------------------------------------------
    def _on_requested(self, event) -> None:
        refuse_strangers(event, self.peers, "not in ADRENAL_DICOM_PEERS")

    def _on_echo(self, event) -> int:
        return SUCCESS

    def _on_store(self, event) -> int:
        fields = parse_store(event)
        if not isinstance(fields, dict):  # the failure status to answer
            return fields
        try:
            record_instance(calling_aet=str(event.assoc.requestor.ae_title).strip(),
                            address=event.assoc.requestor.address, **fields)
        except Exception:  # noqa: BLE001 - not acknowledged: the sender keeps it and retries
            log.exception("could not store instance %s", fields["sop_uid"])
            return OUT_OF_RESOURCES
        return SUCCESS

    def _on_closed(self, event) -> None:
        connection.close()  # this association thread's database connection

    # -- lifetime ------------------------------------------------------------------------------------------
    def start(self) -> None:
        close_old_connections()
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_CLOSE, self._on_closed)]
        self.server = self.ae.start_server((self.bind, self.port), block=False, evt_handlers=handlers)
        log.info("DICOM listener %s on %s:%s; peers %s", self.aet, self.bind, self.port,
                 ", ".join(map(str, self.peers)) or "none (every association is refused)")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
