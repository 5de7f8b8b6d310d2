"""The home page's job list: each job links to what it is about (import report, run, prediction, dataset), as far
as the user's role opens it, and running jobs are followed live (data-follow for js/jobs.js)."""
from __future__ import annotations

import re

from adrenal_site.jobs.models import Job
from annotations.models import ImportReport
from inference.models import Prediction
from tests.factories import make_dataset, make_job, make_run, make_series, make_split


def job_rows(html: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(0) for m in re.finditer(r'<tr data-job-id="(\d+)".*?</tr>', html, re.S)}


def test_home_jobs_link_to_their_subject_and_follow_live(client_as, users):
    ds = make_dataset("Liver & <adrenal>", members=[users["clinician"], users["lead"]])
    series = make_series(ds, "P001")
    run = make_run(ds, make_split(ds, ["P001"], [[], []]))
    imp = make_job("import", Job.Status.RUNNING, task_name="annotations.tasks.import_studies",
                   params={"dataset_id": ds.pk}, progress=40, message="file 3/8", dataset_id=ds.pk)
    report = ImportReport.objects.create(dataset=ds, job=imp, source="cohort.zip")
    predict = make_job("predict", task_name="inference.tasks.predict_job", queue="gpu",
                       params={"series_id": series.pk, "run_id": run.pk}, dataset_id=ds.pk)
    prediction = Prediction.objects.create(series=series, run=run, verdict="normal", job=predict)
    propose = make_job("propose_crops", params={"dataset_id": None, "series_ids": [series.pk]}, dataset_id=ds.pk)
    images = make_job("images25d", Job.Status.QUEUED, params={"dataset_id": ds.pk}, dataset_id=ds.pk)
    other = make_dataset("not mine")
    hidden = make_job("images25d", params={"dataset_id": other.pk}, dataset_id=other.pk)
    worklist = f'href="/datasets/{ds.pk}/"'

    rows = job_rows(client_as("admin").get("/").content.decode())
    assert f'href="/store/imports/{report.pk}/">import #{report.pk}</a>' in rows[imp.pk]
    assert f'href="/runs/{run.pk}/">run #{run.pk}</a>' in rows[run.job_id]
    assert f'href="/series/{series.pk}/">prediction #{prediction.pk}</a>' in rows[predict.pk]
    for job in (propose, images):
        assert worklist in rows[job.pk] and "dataset Liver &amp; &lt;adrenal&gt;" in rows[job.pk]
    assert f'href="/datasets/{other.pk}/"' in rows[hidden.pk]  # admins see every dataset
    # running and queued jobs are followed by js/jobs.js; finished ones are not polled
    assert "data-follow" in rows[imp.pk] and "data-follow" in rows[images.pk]
    assert "data-follow" not in rows[predict.pk]
    assert 'data-field="progress"' in rows[imp.pk] and 'data-field="status"' in rows[imp.pk]

    rows = job_rows(client_as("lead").get("/").content.decode())
    assert worklist in rows[imp.pk] and "/store/imports/" not in rows[imp.pk]  # import reports are admins'
    assert f'href="/runs/{run.pk}/"' in rows[run.job_id]
    assert f'href="/datasets/{other.pk}/"' not in rows.get(hidden.pk, "")
    assert "frontend/js/jobs.js" in client_as("lead").get("/").content.decode()
