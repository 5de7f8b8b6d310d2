from django.apps import AppConfig
from django.db.models.signals import post_delete


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Studies and annotations"

    def ready(self) -> None:
        from adrenal_site.jobs.runner import job_ended  # noqa: PLC0415 - loaded with the models

        from .models import Volume  # noqa: PLC0415
        from .signals import remove_deleted_job_upload, remove_job_upload, remove_volume_files  # noqa: PLC0415

        job_ended.connect(remove_job_upload, dispatch_uid="annotations-remove-job-upload")
        post_delete.connect(remove_deleted_job_upload, sender="jobs.Job",
                            dispatch_uid="annotations-remove-deleted-job-upload")
        post_delete.connect(remove_volume_files, sender=Volume, dispatch_uid="annotations-remove-volume-files")
