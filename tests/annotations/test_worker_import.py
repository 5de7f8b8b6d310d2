"""An import job on a real cpu worker that is SIGKILLed halfway; the restarted worker re-runs the job, which
resumes its report and ends complete with no duplicates."""
from __future__ import annotations

import pytest

from annotations.models import Dataset, ImportItem, ImportReport, Series, SourceInstance, Volume
from annotations.tasks import start_import
from tests.conftest import wait_for
from tests.plugins.store import make_store_cohort

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_import_killed_halfway_then_resumed_by_the_restarted_worker(celery_worker_proc, tmp_path,
                                                                    django_capture_on_commit_callbacks):
    root = tmp_path / "cohort"
    make_store_cohort(root, patients=8, size=192, slices=24)  # 16 series, slow enough to kill in between
    ds = Dataset.objects.create(name="killed")
    with django_capture_on_commit_callbacks(execute=True):
        job = start_import(ds, str(root), source=str(root))
        report = ImportReport.objects.create(dataset=ds, job=job, source=str(root))
    wait_for(lambda: report.items.filter(status=ImportItem.Status.IMPORTED).exists(), timeout=120, interval=0.05,
             what="the first imported series")
    celery_worker_proc.kill()
    job.refresh_from_db()
    assert job.status == "running", "the import finished before the worker was killed: make the cohort larger"
    partial = Series.objects.count()
    assert 0 < partial < 16
    celery_worker_proc.start()  # same node name: it re-sends the job its previous run left running
    wait_for(lambda: job.__class__.objects.get(pk=job.pk).status in ("succeeded", "failed"), timeout=180,
             what="the resumed import")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2, (job.status, job.message, job.error)
    assert Series.objects.count() == 16 and Volume.objects.count() == 16
    assert SourceInstance.objects.count() == sum(s.instance_count for s in Series.objects.all()) == 8 * (24 + 9)
    imported = list(report.items.filter(status="imported").values_list("series_id", flat=True))
    assert sorted(imported) == sorted(Series.objects.values_list("pk", flat=True))  # one item per series
    assert report.items.filter(reason="localizer/scout image").count() == 8


def test_command_queues_on_the_cpu_worker_and_waits(celery_worker_proc, tmp_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    root = tmp_path / "cohort"
    make_store_cohort(root, patients=2)
    out, err = StringIO(), StringIO()
    call_command("import_studies", str(root), "--dataset", "queued", "--json", stdout=out, stderr=err)
    doc = json.loads(out.getvalue())
    assert len(doc["series"]) == 4 and doc["failed"] == []
    assert "[succeeded] 100.0%" in err.getvalue()
    report = ImportReport.objects.get(dataset__name="queued")
    assert report.job.worker.startswith("testworker@")  # run by the worker, not in this process
