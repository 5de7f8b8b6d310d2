"""The Celery application.

Two queues: ``cpu`` (imports, box proposals, 2.5D images, evaluation) and ``gpu`` (training folds
and inference). Late acknowledgement, reject on worker loss and a prefetch of one message per
process, so a worker killed mid-task hands its task back instead of losing it. All settings are
the ``CELERY_*`` names in ``adrenal_site.settings``: Redis in production and CI, kombu's
filesystem transport (no server process) on the embedded default.
"""
from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adrenal_site.settings")

QUEUES = ("cpu", "gpu")

app = Celery("adrenal_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
app.autodiscover_tasks()
