"""A real Celery worker on "another host": it sees the shared data at its own mount point (``MEDIA_ROOT`` set in
its environment), the web host's path does not exist for it, and it imports, proposes, builds 2.5D images and
gives verdicts from the storage names in the jobs the web host queued."""
from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.plugins.storage import paths_in_db, stage_on_web_host

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_a_worker_on_another_mount_point_runs_the_web_hosts_jobs(transactional_db, two_hosts, users, request):
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import enqueue, send_job
    from annotations.models import Series
    from inference.models import Image25D, Prediction
    from inference.tasks import build_images_job, predict_job

    staged = stage_on_web_host(two_hosts, users["lead"])
    two_hosts.move_to_worker_host()  # the worker inherits MEDIA_ROOT = the worker host's mount
    worker = request.getfixturevalue("celery_worker_proc")

    def all_finished(what: str) -> None:
        wait_for(lambda: not Job.objects.exclude(status__in=Job.FINISHED).exists(), timeout=240, what=what)
        failed = [(j.kind, j.message, j.error[-500:]) for j in Job.objects.exclude(status=Job.Status.SUCCEEDED)]
        assert not failed, f"{failed}\n{worker.log.read_text()[-3000:]}"

    send_job(staged["import_job"])
    send_job(staged["predict_job"])
    all_finished("the import, the uploaded scan's verdict and the jobs the import queued")
    series = Series.objects.get(study__patient__dataset=staged["dataset"])
    assert set(series.boxes.values_list("side", flat=True)) == {"R", "L"}

    enqueue(build_images_job, params={"series_ids": [series.pk], "use_proposed": True,
                                      "image": {"side_px": 32, "pixel_spacing_mm": 2.0}})
    enqueue(predict_job, params={"series_id": series.pk, "run_id": staged["run"].pk})
    all_finished("2.5D images and the imported scan's verdict")

    media = two_hosts.worker_media
    assert (media / series.volume.file.name).is_file()
    images = list(Image25D.objects.filter(series=series))
    assert images and all((media / i.file.name).is_file() and (media / i.thumbnail.name).is_file() for i in images)
    verdicts = Prediction.objects.filter(run=staged["run"])
    assert verdicts.count() == 2 and all(p.verdict in ("normal", "abnormal") for p in verdicts)
    assert not any((media / "uploads").iterdir()), "uploads are removed by the jobs that used them"
    assert not two_hosts.web.exists(), "the worker never used the web host's path"
    assert all(j.worker for j in Job.objects.filter(kind__in=["import", "predict", "images25d"])), "run by the worker"
    assert paths_in_db(two_hosts.web, two_hosts.worker, two_hosts.web.parents[2]) == []
