"""Pulling studies from a PACS into a dataset (``manage.py pacs_query`` / ``pacs_retrieve``): C-FIND and C-GET
or C-MOVE against a DIMSE peer (``ADRENAL_PACS``), or QIDO-RS and WADO-RS when a DICOMweb URL is configured
(``ADRENAL_DICOMWEB_URL``). A retrieve is recorded as a closed ``ReceivedStudy`` of source "retrieve" whose
``dicom_study`` job imports it like a received study (verdicts only when asked)."""
from __future__ import annotations

import re
import shutil
from datetime import datetime
from io import BytesIO

from django.conf import settings
from django.utils import timezone
from pynetdicom import AE, evt

from annotations.models import Dataset

from ...models import ReceivedStudy
from . import dicomweb, scu, spool
from .config import Peer, pacs
from .scp import CT_STORAGE, TRANSFER_SYNTAXES, bookkeeping, refuse_strangers, save_instance, store_handler

LEVELS = {"study": "STUDY", "series": "SERIES"}


class RetrieveFailed(RuntimeError):
    """A retrieve broke off after some instances had arrived (the PACS went down, the study vanished): they
    were discarded; the message says why and how many."""


def query_keys(*, patient_id: str = "", patient_name: str = "", date: str = "", modality: str = "",
               description: str = "", study_uid: str = "", level: str = "study") -> dict[str, str]:
    """C-FIND/QIDO matching keys from the command's options (date ``YYYYMMDD`` or a range ``A-B``)."""
    keys = {"PatientID": patient_id, "PatientName": patient_name, "StudyDate": date,
            "StudyInstanceUID": study_uid}
    if level == "series":
        keys.update(Modality=modality, SeriesDescription=description)
    else:
        keys.update(ModalitiesInStudy=modality, StudyDescription=description)
    keys = {k: v.strip() for k, v in keys.items() if v and v.strip()}
    for keyword, value in keys.items():
        check_key(keyword, value)
    return keys


DATE_RANGE_RE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
MAX_CHARS = {"PatientID": 64, "PatientName": 64, "StudyDescription": 64, "SeriesDescription": 64,
             "ModalitiesInStudy": 16, "Modality": 16}


def check_key(keyword: str, value: str) -> None:
    """Refuse a matching key the PACS would read otherwise than meant (ValueError naming it): a date not
    ``YYYYMMDD`` or a range of them (an ISO '2024-01-31' matched nothing, silently), a backslash (it splits a DICOM
    value in two), a value longer than its element allows, a UID with wildcards or other characters (UIDs match
    exactly), control characters."""
    if "\\" in value:
        raise ValueError(f"{keyword} {value!r}: a backslash separates DICOM values; give one value")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{keyword} {value!r}: control characters are not allowed")
    if keyword == "StudyDate":
        m = DATE_RANGE_RE.match(value)
        dates = [d for d in (m.group(1), m.group(3)) if d] if m and value != "-" else None
        try:
            for d in dates or []:
                datetime.strptime(d, "%Y%m%d")
        except ValueError:
            dates = None
        if not dates:
            raise ValueError(f"date {value!r} is not YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may be left "
                             f"open: 20240101-)")
    elif keyword == "StudyInstanceUID":
        if len(value) > 64 or not re.fullmatch(r"[0-9]+(\.[0-9]+)*", value):
            raise ValueError(f"UID {value!r} is not a DICOM UID (digits and dots, at most 64; UIDs match "
                             f"exactly, without wildcards)")
    elif len(value) > MAX_CHARS.get(keyword, 64):
        raise ValueError(f"{keyword} {value[:80]!r} is longer than the {MAX_CHARS.get(keyword, 64)} characters "
                         f"DICOM allows")


def query(level: str, keys: dict[str, str], *, peer: Peer | None = None, url: str | None = None) -> list[dict]:
    """Matches at ``level`` ("study" or "series") from the DICOMweb ``url`` when given (or configured and no
    ``peer`` is), else from the DIMSE ``peer`` (default ``ADRENAL_PACS``). Raises ConfigError or
    AssociationFailed."""
    url = url if url is not None else ("" if peer else settings.ADRENAL_DICOMWEB_URL)
    if url:
        return dicomweb.search(url, LEVELS[level], keys)
    return scu.find(peer or pacs(), LEVELS[level], keys)


def _new_delivery(study_uid: str, source_name: str, dataset: Dataset, judge: bool) -> ReceivedStudy:
    return ReceivedStudy.objects.create(study_uid=study_uid, source=ReceivedStudy.Source.RETRIEVE,
                                        calling_aet=source_name[:16], dataset=dataset, judge=judge)


def retrieve(study_uid: str, *, dataset: Dataset, series_uids: list[str] | None = None, method: str = "get",
             peer: Peer | None = None, url: str | None = None, judge: bool = False, move_aet: str = "",
             move_port: int = 0) -> tuple[ReceivedStudy, dict[str, int]]:
    """Retrieve a study (or some of its series) into a new delivery, closed when done; returns it and the
    sub-operation counts. ``method``: "get" (C-GET), "move" (C-MOVE to ``move_aet``, received here on
    ``move_port``: the PACS must know that AE at this host and port) or "dicomweb" (WADO-RS from ``url``).
    Raises ConfigError, AssociationFailed, or requests' errors for DICOMweb, before anything arrived;
    RetrieveFailed after (the partial delivery is removed)."""
    for uid in (study_uid, *(series_uids or ())):  # '*' or '1.2.*' would ask the PACS for what they match
        check_key("StudyInstanceUID", uid)
    url = url if url is not None else ("" if peer else settings.ADRENAL_DICOMWEB_URL)
    if url and method != "dicomweb":
        method = "dicomweb"
    delivery = None
    try:
        if method == "dicomweb":
            delivery = _new_delivery(study_uid, "DICOMweb", dataset, judge)
            counts = {"completed": 0, "failed": 0, "warning": 0}
            for ds in dicomweb.retrieve(url, study_uid, series_uids):
                buffer = BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                save_instance(delivery, study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                              sop_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
                              transfer_syntax=str(ds.file_meta.TransferSyntaxUID), data=buffer.getvalue(),
                              **bookkeeping(ds))
                counts["completed"] += 1
        else:
            if method not in ("get", "move"):
                raise ValueError(f"unknown retrieve method {method!r} (get, move or dicomweb)")
            peer = peer or pacs()
            others = 0
            if not series_uids:
                series_uids, others = ct_series(peer, study_uid)
            delivery = _new_delivery(study_uid, peer.aet, dataset, judge)
            if method == "get":
                counts = scu.get(peer, study_uid, series_uids, store_handler(delivery))
            else:
                counts = _move(peer, study_uid, series_uids, delivery, move_aet, move_port)
            counts["series_not_ct"] = others
    except BaseException as exc:
        if delivery is not None:
            arrived = discard(delivery)
            if arrived and isinstance(exc, Exception):
                raise RetrieveFailed(f"{exc}; the {arrived} instance(s) that had arrived were discarded (an "
                                     f"incomplete study is not imported): retrieve it again") from exc
        raise
    ReceivedStudy.objects.filter(pk=delivery.pk).update(closed_at=timezone.now(), peer_address=url or str(peer))
    delivery.refresh_from_db()
    return delivery, counts


def ct_series(peer: Peer, study_uid: str) -> tuple[list[str] | None, int]:
    """``(the study's CT series UIDs, how many other series it has)`` by a series-level C-FIND, so a C-GET or C-MOVE
    asks for the CT series only: a CT study commonly holds a dose report (SR) or screen captures (SC), which this
    node does not accept, and a PACS may end a study-level retrieve at the first instance it cannot send (Orthanc
    answers 0xC000 having sent nothing). ``(None, 0)`` (retrieve the study as a whole) when the PACS answers the
    query with no series or none whose Modality is CT (it may not return the attribute)."""
    try:
        found = scu.find(peer, "SERIES", {"StudyInstanceUID": study_uid})
    except scu.AssociationFailed:  # the retrieve itself says what is wrong with the PACS
        return None, 0
    ct = [m["SeriesInstanceUID"] for m in found if m.get("SeriesInstanceUID") and m.get("Modality") == "CT"]
    return (ct, len(found) - len(ct)) if ct else (None, 0)


def discard(delivery: ReceivedStudy) -> int:
    """Remove a failed retrieve's delivery: its spooled instances, rows and folder (the PACS still holds the study).
    Kept closed without a job, it showed "queued" on the admins' home page for ever and its files stayed in the
    spool, never imported. Returns how many instances had arrived."""
    arrived, folder = delivery.instances.count(), spool.root() / delivery.folder
    delivery.delete()
    shutil.rmtree(folder, ignore_errors=True)
    return arrived


def move_receiver(peer: Peer, delivery: ReceivedStudy, move_aet: str, move_port: int):
    """The Storage SCP a C-MOVE's instances arrive at (``move_aet`` on ``move_port``, in background threads): only
    ``peer`` (the PACS moving them: its AE title from its host) may associate, so no other host can push instances
    into ``delivery`` while the move runs. The caller shuts it down."""
    ae = AE(ae_title=move_aet)
    for sop_class in CT_STORAGE:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    return ae.start_server((settings.ADRENAL_DICOM_BIND, move_port), block=False, evt_handlers=[
        (evt.EVT_REQUESTED, lambda event: refuse_strangers(event, [peer], f"not the PACS {peer} this move is from")),
        (evt.EVT_C_STORE, store_handler(delivery))])


def _move(peer: Peer, study_uid: str, series_uids, delivery: ReceivedStudy, move_aet: str, move_port: int) -> dict:
    if not move_aet or not move_port:
        raise ValueError("C-MOVE needs the destination AE title and the port to receive on (--move-aet, --move-port)")
    server = move_receiver(peer, delivery, move_aet, move_port)
    try:
        return scu.move(peer, move_aet, study_uid, series_uids)
    finally:
        receiving = list(server.active_associations)
        server.shutdown()
        for assoc in receiving:  # no store handler still writing into a delivery the caller may remove
            assoc.join(scu.DIMSE_TIMEOUT_S)
