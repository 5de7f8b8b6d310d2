"""Worker start-up: recover jobs a killed worker left running."""
from __future__ import annotations

import logging

from celery.signals import worker_ready

log = logging.getLogger(__name__)


@worker_ready.connect
def _recover(sender=None, **_: object) -> None:
    from .runner import recover_orphans

    nodename = getattr(sender, "hostname", "") or ""
    resent = recover_orphans(nodename)
    if resent:
        log.warning("re-sent jobs %s left running by a previous run of worker %s", resent, nodename)
