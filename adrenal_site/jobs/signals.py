"""Worker start-up: recover jobs a killed worker left running (connected in ``JobsConfig.ready``)."""
from __future__ import annotations

import logging

from .runner import recover_orphans

log = logging.getLogger(__name__)


def recover_at_worker_start(sender=None, **_: object) -> None:
    nodename = getattr(sender, "hostname", "") or ""
    resent = recover_orphans(nodename)
    if resent:
        log.warning("re-sent jobs %s left running by a previous run of worker %s", resent, nodename)
