"""Query and retrieve over DICOMweb (dicomweb-client): QIDO-RS searches and WADO-RS series retrieval, for a
PACS configured by URL (``ADRENAL_DICOMWEB_URL``) instead of a DIMSE peer."""
from __future__ import annotations

from collections.abc import Iterator

from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from .scu import SERIES_KEYS, STUDY_KEYS, _text

TIMEOUT_S = 120
QIDO_LIMIT = 1000  # one page (paging with offsets loops on some servers, e.g. Orthanc's plugin 1.7)


def client(url: str) -> DICOMwebClient:
    return DICOMwebClient(url=url.rstrip("/"), timeout=TIMEOUT_S)


def search(url: str, level: str, keys: dict[str, str]) -> list[dict[str, str]]:
    """QIDO-RS at ``level`` ("STUDY" or "SERIES") with matching ``keys`` (DICOM keywords); each match as
    ``{keyword: text}`` like ``scu.find``."""
    returned = STUDY_KEYS if level == "STUDY" else SERIES_KEYS
    filters = {k: v for k, v in keys.items() if v and k != "StudyInstanceUID"}
    c = client(url)
    if level == "STUDY":
        if keys.get("StudyInstanceUID"):
            filters["StudyInstanceUID"] = keys["StudyInstanceUID"]
        found = c.search_for_studies(search_filters=filters, fields=list(returned), limit=QIDO_LIMIT)
    else:
        found = c.search_for_series(study_instance_uid=keys.get("StudyInstanceUID") or None,
                                    search_filters=filters, fields=list(returned), limit=QIDO_LIMIT)
    out = []
    for item in found:
        ds = Dataset.from_json(item)
        out.append({k: _text(ds.get(k)) for k in returned if k in ds})
    return out


def retrieve(url: str, study_uid: str, series_uids: list[str] | None) -> Iterator[Dataset]:
    """WADO-RS: the instances of the given series of a study (every series when none are given)."""
    c = client(url)
    if not series_uids:
        series_uids = [s["SeriesInstanceUID"] for s in search(url, "SERIES", {"StudyInstanceUID": study_uid})
                       if s.get("SeriesInstanceUID")]
    for series_uid in series_uids:  # as stored (transfer-syntax=*): the importer decodes compressed syntaxes
        yield from c.iter_series(study_uid, series_uid, media_types=(("application/dicom", "*"),))
