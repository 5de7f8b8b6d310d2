"""The node as a DICOM client (pynetdicom): C-ECHO, C-STORE of files, C-FIND, C-GET and C-MOVE (study root).

Every function associates as ``ADRENAL_DICOM_AET`` with one peer and releases the association; one that
cannot be established raises ``AssociationFailed`` naming the peer and why."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from .config import Peer, own_aet
from .scp import CT_STORAGE, TRANSFER_SYNTAXES

log = logging.getLogger(__name__)

ACSE_TIMEOUT_S, DIMSE_TIMEOUT_S, NETWORK_TIMEOUT_S = 15, 120, 60
WARNING_STATUSES = {0xB000, 0xB006, 0xB007}
STUDY_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyTime",
              "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "SeriesDate", "BodyPartExamined", "NumberOfSeriesRelatedInstances")


class AssociationFailed(RuntimeError):
    """The peer could not be reached or refused the association."""


def _ae() -> AE:
    ae = AE(ae_title=own_aet())
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = ACSE_TIMEOUT_S, DIMSE_TIMEOUT_S, NETWORK_TIMEOUT_S
    return ae


def _associate(ae: AE, peer: Peer, **kw):
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.aet, **kw)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else \
            "could not be reached (connection refused, timed out or aborted)"
        raise AssociationFailed(f"{peer} {why}")
    return assoc


def is_success(status: int | None) -> bool:
    """C-STORE success, or a warning that still means stored (coercion, elements discarded)."""
    return status is not None and (status == 0x0000 or status in WARNING_STATUSES)


def echo(peer: Peer) -> int:
    """C-ECHO; returns the status (0 = success)."""
    ae = _ae()
    ae.add_requested_context(Verification)
    assoc = _associate(ae, peer)
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else -1
    finally:
        assoc.release()


def store(peer: Peer, files: Iterable[Path]) -> list[tuple[Path, int | None, str]]:
    """C-STORE each file over one association: ``[(path, status or None, message)]`` (None: no response, the
    connection was lost). Raises AssociationFailed."""
    files = [Path(f) for f in files]
    ae = _ae()
    proposed: set[tuple[str, str]] = set()
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        key = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        if key not in proposed:
            proposed.add(key)
            syntaxes = list(dict.fromkeys([key[1], ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
            ae.add_requested_context(key[0], syntaxes)
    assoc = _associate(ae, peer)
    out: list[tuple[Path, int | None, str]] = []
    try:
        for path in files:
            try:
                status = assoc.send_c_store(path)
            except (ValueError, RuntimeError) as exc:  # e.g. no accepted presentation context for its class
                out.append((path, None, str(exc)))
                continue
            code = int(status.Status) if status else None
            message = "no response (connection lost)" if status is None else f"status 0x{code:04X}"
            if status is not None and status.get("ErrorComment"):
                message += f": {status.ErrorComment}"
            out.append((path, code, message))
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def _query(level: str, keys: dict[str, str], returned: tuple[str, ...]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in returned:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        if value:
            setattr(ds, keyword, value)
    if any(not str(v).isascii() for v in keys.values() if v):
        # without it the query went out in the default repertoire, each 'é' or '日' a '?': a wildcard for any
        # character, so 'Zoë' matched 'Zoe' and 'Zoä' as well
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def find(peer: Peer, level: str, keys: dict[str, str]) -> list[dict[str, str]]:
    """C-FIND (study root) at ``level`` ("STUDY" or "SERIES") with matching ``keys`` (DICOM keywords, wildcards
    and date ranges as the standard has them); returns each match as ``{keyword: text}``."""
    returned = STUDY_KEYS if level == "STUDY" else SERIES_KEYS
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = _associate(ae, peer)
    matches = []
    try:
        for status, identifier in assoc.send_c_find(_query(level, keys, returned),
                                                    StudyRootQueryRetrieveInformationModelFind):
            if not status:  # None, or pynetdicom's empty Dataset when the connection was lost or aborted
                raise AssociationFailed(f"{peer}: C-FIND got no response (connection lost)")
            if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                matches.append({k: _text(identifier.get(k)) for k in returned if k in identifier})
            elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise AssociationFailed(f"{peer}: C-FIND failed with status 0x{status.Status:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
    return matches


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _retrieve_identifier(study_uid: str, series_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    return ds


def _sub_operations(peer: Peer, responses, what: str) -> dict[str, int]:
    counts = {"completed": 0, "failed": 0, "warning": 0}
    final = None
    for status, _ in responses:
        if not status:  # None, or pynetdicom's empty Dataset when the PACS went down or aborted mid-way
            raise AssociationFailed(f"{peer}: {what} got no response (connection lost)")
        final = status
    if final is None:
        raise AssociationFailed(f"{peer}: {what} got no response")
    for key, keyword in (("completed", "NumberOfCompletedSuboperations"), ("failed", "NumberOfFailedSuboperations"),
                         ("warning", "NumberOfWarningSuboperations")):
        counts[key] = int(final.get(keyword, 0) or 0)
    if final.Status not in (0x0000, 0xB000):
        raise AssociationFailed(f"{peer}: {what} ended with status 0x{final.Status:04X} ({counts})")
    return counts


def get(peer: Peer, study_uid: str, series_uids: list[str] | None, on_store: Callable) -> dict[str, int]:
    """C-GET the study (or the given series of it); every instance arrives on this association and is handed to
    ``on_store(event) -> status``. Only CT storage classes are requested. Returns summed sub-operation counts."""
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for sop_class in CT_STORAGE:
        for syntax in TRANSFER_SYNTAXES:  # one context each, so the PACS can send every instance as stored
            ae.add_requested_context(sop_class, syntax)
        roles.append(build_role(sop_class, scp_role=True))
    assoc = _associate(ae, peer, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    total = {"completed": 0, "failed": 0, "warning": 0}
    try:
        for series_uid in series_uids or [None]:
            responses = assoc.send_c_get(_retrieve_identifier(study_uid, series_uid),
                                         StudyRootQueryRetrieveInformationModelGet)
            for key, value in _sub_operations(peer, responses, "C-GET").items():
                total[key] += value
    finally:
        if assoc.is_established:
            assoc.release()
        # a store handler may still be writing when the connection was lost: the caller's clean-up comes after it
        assoc.join(DIMSE_TIMEOUT_S)
    return total


def move(peer: Peer, destination_aet: str, study_uid: str, series_uids: list[str] | None) -> dict[str, int]:
    """C-MOVE the study (or series) to ``destination_aet`` (an AE the PACS knows); returns sub-operation counts."""
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = _associate(ae, peer)
    total = {"completed": 0, "failed": 0, "warning": 0}
    try:
        for series_uid in series_uids or [None]:
            responses = assoc.send_c_move(_retrieve_identifier(study_uid, series_uid), destination_aet,
                                          StudyRootQueryRetrieveInformationModelMove)
            for key, value in _sub_operations(peer, responses, "C-MOVE").items():
                total[key] += value
    finally:
        if assoc.is_established:
            assoc.release()
    return total
