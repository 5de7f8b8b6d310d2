"""The one storage layer (``adrenal_site.storage``): names in the database and in job messages, resolved on each
host under its own mount of the shared filesystem; the migration that turns old absolute paths into names."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from tests.plugins.storage import paths_in_db, stage_on_web_host


def test_names_resolve_under_this_hosts_root_and_nothing_else(settings, tmp_path):
    from adrenal_site.storage import StorageNameError, local_path, location_for_task, resolve_location, storage_name

    settings.MEDIA_ROOT = tmp_path / "media"
    assert local_path("runs/7/fold0/best.pt") == tmp_path / "media" / "runs/7/fold0/best.pt"
    assert storage_name(tmp_path / "media" / "uploads" / "x" / "upload.zip") == "uploads/x/upload.zip"
    settings.MEDIA_ROOT = tmp_path / "elsewhere"  # another host's mount point: the same name, its own path
    assert local_path("runs/7/fold0/best.pt") == tmp_path / "elsewhere" / "runs/7/fold0/best.pt"
    for bad in ("/etc/passwd", "../secret_key", "runs/../../x", ""):
        with pytest.raises(StorageNameError):
            local_path(bad)
    with pytest.raises(StorageNameError, match="not under the storage root"):
        storage_name(tmp_path / "media" / "x")  # the old root is not this host's
    assert location_for_task(tmp_path / "elsewhere" / "incoming" / "study") == "incoming/study"
    assert location_for_task("/srv/incoming/study") == "/srv/incoming/study"  # a folder outside the store
    assert resolve_location("/srv/incoming/study") == Path("/srv/incoming/study")
    assert resolve_location("incoming/study") == tmp_path / "elsewhere" / "incoming/study"


@pytest.mark.slow
def test_a_worker_host_with_another_mount_point_reads_and_writes_everything(transactional_db, two_hosts, users,
                                                                          monkeypatch):
    """The web host saves uploads and weights and queues the jobs; the data is then seen only at another mount
    point (the web host's copy is gone), where the worker-side jobs import, propose, prepare the viewer, build
    2.5D images and give verdicts, finding and writing every file through the storage names they were given.
    The jobs run in this process (``run_now``, as a worker runs them); nothing is sent to the broker."""
    from django.conf import settings

    from adrenal_site.jobs import runner
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import enqueue, run_now
    from annotations.models import ImportReport, Series
    from annotations.services.volume_cache import slab_dir
    from inference.models import Image25D, Prediction
    from inference.tasks import build_images_job, predict_job

    staged = stage_on_web_host(two_hosts, users["lead"])
    params = {**staged["import_job"].params, **{"upload": staged["predict_job"].params["path"]}}
    assert params["zip_path"].startswith("uploads/") and params["labels_csv"].startswith("uploads/")
    assert params["upload"].startswith("uploads/") and params["upload"].endswith("/second-scan.nii.gz")

    two_hosts.move_to_worker_host()
    monkeypatch.setattr(runner, "send_job", lambda job: None)  # the jobs the import queues wait for run_queued

    def run_queued():
        from celery import current_app

        while job := Job.objects.filter(status=Job.Status.QUEUED).order_by("pk").first():
            run_now(current_app.tasks[job.task_name], job)
            assert job.status == Job.Status.SUCCEEDED, (job.kind, job.message, job.error)

    run_queued()  # the import, the uploaded scan's verdict, then the viewer preparation and proposals queued
    series = Series.objects.get(study__patient__dataset=staged["dataset"])
    assert series.label == "abnormal" and series.volume.file.name.startswith("volumes/")
    assert Path(series.volume.file.path).is_file() and Path(settings.MEDIA_ROOT) == two_hosts.worker_media
    assert Path(series.volume.file.path).is_relative_to(two_hosts.worker_media)
    assert (slab_dir(series.volume) / "manifest.json").is_file()
    assert set(series.boxes.values_list("side", flat=True)) == {"R", "L"}
    assert ImportReport.objects.get(job=staged["import_job"]).source == "upload.zip"

    enqueue(build_images_job, params={"series_ids": [series.pk], "use_proposed": True,
                                      "image": {"side_px": 32, "pixel_spacing_mm": 2.0}}, send=False)
    enqueue(predict_job, params={"series_id": series.pk, "run_id": staged["run"].pk}, send=False)
    run_queued()

    images = list(Image25D.objects.filter(series=series))
    assert images and all(two_hosts.worker_media.joinpath(i.file.name).is_file() for i in images)
    assert np.load(images[0].file.path).shape[0] == 3
    verdicts = Prediction.objects.filter(run=staged["run"])
    assert verdicts.count() == 2 and all(p.verdict in ("normal", "abnormal") for p in verdicts)
    assert not any((two_hosts.worker_media / "uploads").iterdir()), "uploads are removed by the jobs that used them"
    assert not two_hosts.web.exists(), "nothing wrote to the web host's path"
    assert paths_in_db(two_hosts.web, two_hosts.worker, two_hosts.web.parents[2]) == []


def test_migration_makes_old_absolute_paths_relative(db, settings, tmp_path):
    from adrenal_site.jobs.models import Job
    from annotations.models import ImportReport
    from tests.factories import make_dataset, make_run, make_split

    settings.MEDIA_ROOT = tmp_path / "media"
    media = str(tmp_path / "media")
    ds = make_dataset("old")
    run = make_run(ds, make_split(ds, folds=[[]]), fold_weights=[f"{media}/runs/1/fold0/best.pt"],
                   artifacts_dir=f"{media}/runs/1")
    old = Job.objects.create(kind="predict", task_name="inference.tasks.predict_job", queue="gpu",
                             params={"path": f"{media}/uploads/ab/scan.nii.gz", "run_id": run.pk},
                             result={"series_uid": f"{media}/uploads/job-3/files", "verdict": "not assessable"})
    kept = Job.objects.create(kind="import", task_name="annotations.tasks.import_studies",
                              params={"path": "/srv/pacs-export", "zip_path": None, "dataset_id": ds.pk})
    report = ImportReport.objects.create(dataset=ds, source=f"{media}/incoming/batch1")

    migration = importlib.import_module("inference.migrations.0005_storage_relative_paths")
    from django.apps import apps

    migration.forwards(apps, None)
    run.refresh_from_db()
    old.refresh_from_db()
    kept.refresh_from_db()
    report.refresh_from_db()
    assert run.artifacts_dir == "runs/1" and run.folds.get().weights == "runs/1/fold0/best.pt"
    assert old.params == {"path": "uploads/ab/scan.nii.gz", "run_id": run.pk}
    assert old.result["series_uid"] == "uploads/job-3/files"
    assert kept.params["path"] == "/srv/pacs-export"  # outside the storage: kept as given
    assert report.source == "incoming/batch1"
