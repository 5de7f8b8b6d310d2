"""``python manage.py dicom_listener``: the DICOM node's Storage SCP and its clock (README "DICOM node")."""
from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from inference.services.dicom_node import scheduler
from inference.services.dicom_node.config import ConfigError, parse_peers
from inference.services.dicom_node.scp import StorageSCP
from inference.tasks import start_dicom_send, start_dicom_study

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Receive CT studies from the PACS peers (C-ECHO, C-STORE), import each once it is complete, queue "
            "its verdicts and send the SR and key images back; retries deliveries that failed.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=None, help="default ADRENAL_DICOM_PORT")
        parser.add_argument("--aet", default=None, help="default ADRENAL_DICOM_AET")
        parser.add_argument("--bind", default=None, help="address to listen on; default ADRENAL_DICOM_BIND")
        parser.add_argument("--peers", default=None, help="AET@host:port,...; default ADRENAL_DICOM_PEERS")
        parser.add_argument("--stable-seconds", type=float, default=None,
                            help="a study is complete after this long without an instance; "
                                 "default ADRENAL_DICOM_STABLE_SECONDS")

    def handle(self, *args, **opts) -> None:
        try:
            peers = parse_peers(opts["peers"] if opts["peers"] is not None else settings.ADRENAL_DICOM_PEERS)
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        stable = float(opts["stable_seconds"] if opts["stable_seconds"] is not None
                       else settings.ADRENAL_DICOM_STABLE_SECONDS)
        port = opts["port"] or settings.ADRENAL_DICOM_PORT
        aet = opts["aet"] or settings.ADRENAL_DICOM_AET
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # not one line per instance
        scp = StorageSCP(aet=aet, port=port, peers=peers, bind=opts["bind"] or settings.ADRENAL_DICOM_BIND)
        try:
            scp.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on port {port}: {exc}") from exc
        reopened = scheduler.grace_after_restart()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"DICOM listener {aet} on port {port}, peers: "
                          f"{', '.join(map(str, peers)) or 'none (every association is refused)'}; "
                          f"a study is complete after {stable:g} s without an instance"
                          + (f"; {reopened} open delivery(ies) resumed" if reopened else ""))
        self.stdout.flush()
        interval = max(0.2, min(1.0, stable / 4))
        try:
            while not stop.is_set():
                try:
                    done = scheduler.tick(stable, start_dicom_study, start_dicom_send)
                    if done["closed"] or done["resent"]:
                        self.stdout.write(f"complete studies queued: {done['closed']}; "
                                          f"deliveries retried for predictions: {done['resent']}")
                        self.stdout.flush()
                except Exception:  # noqa: BLE001 - e.g. the database restarting: the next turn tries again
                    log.exception("scheduler turn failed")
                finally:
                    close_old_connections()
                stop.wait(interval)
        finally:
            scp.stop()
            self.stdout.write("DICOM listener stopped")
