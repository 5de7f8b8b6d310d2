"""Backfill ``Job.dataset_id`` (who may see a job) for jobs made before it existed, from their params: a
dataset, a run, a series (or the first of several) or a prediction. Jobs of none stay admins' and their
starter's."""
from django.db import migrations


def backfill(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    Run = apps.get_model("inference", "TrainingRun")
    Series = apps.get_model("annotations", "Series")
    Prediction = apps.get_model("inference", "Prediction")
    for job in Job.objects.filter(dataset_id__isnull=True).iterator():
        p = job.params if isinstance(job.params, dict) else {}
        ds = None
        try:
            if p.get("dataset_id"):
                ds = int(p["dataset_id"])
            elif p.get("run_id"):
                ds = Run.objects.filter(pk=int(p["run_id"])).values_list("dataset_id", flat=True).first()
            elif p.get("series_id") or p.get("series_ids"):
                sid = p.get("series_id") or sorted(p["series_ids"])[0]
                ds = Series.objects.filter(pk=int(sid)).values_list("study__patient__dataset_id", flat=True).first()
            elif p.get("prediction_id"):
                ds = Prediction.objects.filter(pk=int(p["prediction_id"])).values_list(
                    "series__study__patient__dataset_id", flat=True).first()
        except (TypeError, ValueError, IndexError):
            ds = None
        if ds is None and job.parent_id:
            ds = Job.objects.filter(pk=job.parent_id).values_list("dataset_id", flat=True).first()
        if ds is not None:
            Job.objects.filter(pk=job.pk).update(dataset_id=ds)


class Migration(migrations.Migration):

    dependencies = [
        ("annotations", "0003_box_history_and_side_findings"),
        ("inference", "0005_storage_relative_paths"),
        ("jobs", "0003_job_dataset"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
