"""Worker start-up: recover jobs a killed worker left running (connected in ``JobsConfig.ready``), then keep
failing jobs whose heartbeat stopped (``reap_stale``) every ``REAP_SECONDS`` while the worker lives: a worker that
never comes back (another host, a container recreated under a new name) leaves no job 'running' for ever."""
from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connection

from .runner import reap_stale, recover_orphans

log = logging.getLogger(__name__)

REAP_SECONDS = 60


def recover_at_worker_start(sender=None, **_: object) -> None:
    nodename = getattr(sender, "hostname", "") or ""
    resent = recover_orphans(nodename)
    if resent:
        log.warning("re-sent jobs %s left running by a previous run of worker %s", resent, nodename)
    threading.Thread(target=_reap_forever, daemon=True, name="jobs-reaper").start()


def _reap_forever() -> None:
    stop = threading.Event()
    while not stop.wait(REAP_SECONDS):
        try:
            close_old_connections()
            if n := reap_stale():
                log.warning("failed %d job(s) whose worker stopped beating", n)
        except Exception:  # noqa: BLE001 - a database hiccup must not end the reaper
            log.exception("reaping stale jobs failed")
        finally:
            connection.close()
