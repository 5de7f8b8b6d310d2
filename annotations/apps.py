from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Studies and annotations"

    def ready(self) -> None:
        from adrenal_site.jobs.runner import job_ended  # noqa: PLC0415 - loaded with the models

        from .signals import remove_job_upload  # noqa: PLC0415

        job_ended.connect(remove_job_upload, dispatch_uid="annotations-remove-job-upload")
