from celery.signals import worker_ready
from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "adrenal_site.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from .signals import recover_at_worker_start  # noqa: PLC0415 - models must be loaded first

        worker_ready.connect(recover_at_worker_start, dispatch_uid="jobs-recover-at-worker-start")
