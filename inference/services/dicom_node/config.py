"""Peers and destinations of the DICOM node, written ``AET@host:port`` in the settings."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings


class ConfigError(ValueError):
    """A DICOM node setting that cannot be understood; the message names it."""


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity: AE title, host and port. ``host`` "*" accepts any address (as a peer)."""

    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"

    def matches(self, aet: str, address: str) -> bool:
        """Whether an association from ``address`` calling itself ``aet`` is this peer."""
        if aet.strip() != self.aet:
            return False
        return self.host == "*" or address in _addresses(self.host)


@lru_cache(maxsize=64)
def _addresses(host: str) -> frozenset[str]:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return frozenset({host})
    return frozenset({host, *(info[4][0] for info in infos)})


def parse_peer(text: str, what: str = "peer") -> Peer:
    """``"AET@host:port"`` -> Peer. Raises ConfigError naming ``what`` and the text."""
    text = text.strip()
    aet, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not at or not colon or not aet or not host:
        raise ConfigError(f"{what} {text!r} is not AET@host:port")
    if len(aet) > 16:
        raise ConfigError(f"{what} {text!r}: AE title longer than 16 characters")
    try:
        number = int(port)
    except ValueError as exc:
        raise ConfigError(f"{what} {text!r}: port {port!r} is not a number") from exc
    if not 0 < number < 65536:
        raise ConfigError(f"{what} {text!r}: port {number} out of range")
    return Peer(aet, host.strip("[]"), number)


def parse_peers(text: str) -> list[Peer]:
    """``"AET@host:port,AET2@host2:port2"`` -> Peers (empty text: none)."""
    return [parse_peer(part, "ADRENAL_DICOM_PEERS entry") for part in text.split(",") if part.strip()]


def peers() -> list[Peer]:
    return parse_peers(settings.ADRENAL_DICOM_PEERS)


def results_destination(calling_aet: str = "") -> Peer | None:
    """Where results go: ``ADRENAL_DICOM_RESULTS_TO``, else the configured peer that sent the study, else
    None (results are then only kept for download)."""
    if settings.ADRENAL_DICOM_RESULTS_TO.strip():
        return parse_peer(settings.ADRENAL_DICOM_RESULTS_TO, "ADRENAL_DICOM_RESULTS_TO")
    return next((p for p in peers() if p.aet == calling_aet), None)


def pacs() -> Peer:
    """The PACS ``pacs_query``/``pacs_retrieve`` talk to (``ADRENAL_PACS``). Raises ConfigError when unset."""
    if not settings.ADRENAL_PACS.strip():
        raise ConfigError("set ADRENAL_PACS (AET@host:port) or ADRENAL_DICOMWEB_URL, or pass --pacs")
    return parse_peer(settings.ADRENAL_PACS, "ADRENAL_PACS")


def own_aet() -> str:
    return settings.ADRENAL_DICOM_AET
