from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "adrenal_site.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (worker start-up recovery)
