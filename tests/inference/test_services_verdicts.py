"""Verdicts in the product, through the services, views and API without a worker (jobs run here, one by one):
judging every scan of a dataset once per model, a submission followed to its verdict with per-side findings,
evidence thumbnails, the worklist and viewer showing verdicts, and a submitter opening what they submitted."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # the runner closes connections


@pytest.fixture
def here(monkeypatch):
    """Jobs are only queued (nothing sent to a broker); the test runs them with ``run_now``."""
    monkeypatch.setattr("adrenal_site.jobs.runner.send_job", lambda job: None)


def chest_only_volume():
    from synthetic import make_patient

    return make_patient(9, abnormal=False, profile="tiny", coverage="chest_only").volume


def test_judge_every_scan_once_per_model_unless_forced(here, users, gland_model, ct_series, client):
    from adrenal_site.jobs.runner import run_now
    from inference.models import Prediction
    from inference.services.verdicts import side_findings
    from inference.tasks import judge_dataset_job, start_judge_dataset

    run = gland_model(members=[users["clinician"], users["lead"]])
    ds = run.dataset
    a = ct_series(dataset=ds, patient="P001")
    b = ct_series(dataset=ds, patient="P002", volume=chest_only_volume(), description="chest only")
    job = start_judge_dataset(ds, users["lead"])
    assert start_judge_dataset(ds, users["lead"]).pk == job.pk  # one at a time per dataset
    job = run_now(judge_dataset_job, job)
    assert job.status == "succeeded", job.error
    assert job.result["judged"] == 2 and job.result["skipped"] == 0 and not job.result["errors"]
    assert job.progress == 100.0 and "2 judged" in job.message
    pa, pb = Prediction.objects.get(series=a, run=run), Prediction.objects.get(series=b, run=run)
    assert pa.verdict == "abnormal" and set(pa.side_details) == {"R", "L"} and pa.evidence  # every image flagged
    assert [f["side"] for f in side_findings(pa)] == ["R", "L"]
    assert all(f["verdict"] == "abnormal" and f["score"] is not None for f in side_findings(pa))
    assert pb.verdict == "not_assessable" and pb.reason
    assert all(f["verdict"] == "not_assessable" and f["reason"] == pb.reason for f in side_findings(pb))
    # again: nothing new; forced: both again
    again = run_now(judge_dataset_job, start_judge_dataset(ds, users["lead"]))
    assert again.result["judged"] == 0 and again.result["skipped"] == 2
    forced = run_now(judge_dataset_job, start_judge_dataset(ds, users["lead"], force=True))
    assert forced.result["judged"] == 2 and Prediction.objects.filter(series=a, run=run).count() == 2
    # the worklist's column and the viewer's panel show it
    client.force_login(users["clinician"])
    html = client.get(f"/datasets/{ds.pk}/").content.decode()
    assert 'class="badge abnormal"' in html and 'class="badge not_assessable"' in html
    html = client.get(f"/series/{a.pk}/").content.decode()
    assert 'id="verdict-sides"' in html and 'id="evidence-toggle"' in html and f"run #{run.pk}" in html
    assert html.count('<tr data-side="') == 2
    html = client.get(f"/series/{b.pk}/").content.decode()
    assert 'id="verdict-sides"' in html and "not assessable" in html and 'id="evidence-toggle"' not in html
    # evidence thumbnails: a PNG per map; a map that is not there is a 404, a bad size a 400
    resp = client.get(f"/api/predictions/{pa.pk}/evidence/0.png?size=64")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert b"".join(resp.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/predictions/{pa.pk}/evidence/{len(pa.evidence)}.png").status_code == 404
    assert client.get(f"/api/predictions/{pa.pk}/evidence/0.png?size=9").status_code == 400


def test_judging_a_dataset_through_the_api_and_the_dashboard(here, users, gland_model, client):
    from adrenal_site.jobs.models import Job
    from tests.factories import make_dataset

    run = gland_model(members=[users["clinician"], users["lead"]])
    client.force_login(users["clinician"])
    assert client.post(f"/api/datasets/{run.dataset.pk}/judge/", {}, content_type="application/json").status_code == 403
    client.force_login(users["lead"])
    resp = client.post(f"/api/datasets/{run.dataset.pk}/judge/", {"force": "yes"}, content_type="application/json")
    assert resp.status_code == 400 and "force" in resp.json()
    resp = client.post(f"/api/datasets/{run.dataset.pk}/judge/", {}, content_type="application/json")
    assert resp.status_code == 202 and resp.json()["run"] == run.pk
    job = Job.objects.get(pk=resp.json()["job"])
    assert job.kind == "judge_dataset" and job.dataset_id == run.dataset.pk  # its members see and follow it
    other = make_dataset("no-model", members=[users["lead"]])
    resp = client.post(f"/api/datasets/{other.pk}/judge/", {}, content_type="application/json")
    assert resp.status_code == 400 and "no promoted model" in resp.json()["run"][0]
    # the dashboard's button queues the same job (the one already queued for this dataset)
    resp = client.post(f"/runs/{run.pk}/judge/")
    assert resp.status_code == 302 and Job.objects.filter(kind="judge_dataset").count() == 1
    assert 'id="judge-job"' in client.get(f"/runs/{run.pk}/dashboard/").content.decode()
    # asking for another model, or for force, while that job is queued is refused naming it, not answered 202
    # with the job of the other model (before: {"job": #, "run": <the promoted run>} for a request naming run 2)
    from tests.factories import make_run

    second = make_run(run.dataset, run.split, config=dict(run.config), operating_value=0.5, version=2)
    url = f"/api/datasets/{run.dataset.pk}/judge/"
    for body in ({"run": second.pk}, {"force": True}):
        resp = client.post(url, body, content_type="application/json")
        assert resp.status_code == 409 and resp.json()["job"] == job.pk, (body, resp.content)
        assert f"job #{job.pk} is already judging every scan" in resp.json()["detail"]
        assert f"with model run {run.pk}" in resp.json()["detail"]
    assert client.post(url, {"run": run.pk}, content_type="application/json").json()["job"] == job.pk
    resp = client.post(f"/runs/{second.pk}/judge/", follow=True)
    assert f"job #{job.pk} is already judging" in resp.content.decode()
    assert Job.objects.filter(kind="judge_dataset").count() == 1


def test_judging_a_dataset_from_the_store_page(here, users, make_user, gland_model, client):
    """The store's dataset page offers leads "judge every scan" with the promoted model: the same call and
    permission as ``POST /api/datasets/<id>/judge/`` (one job per dataset at a time, members only, leads only),
    then follows the job; without a promoted model it says why and queues nothing."""
    from adrenal_site.jobs.models import Job
    from tests.factories import make_dataset

    run = gland_model(members=[users["clinician"], users["lead"]])
    ds = run.dataset
    page, judge = f"/store/datasets/{ds.pk}/", f"/store/datasets/{ds.pk}/judge/"
    client.force_login(users["clinician"])
    assert 'id="judge-form"' not in client.get(page).content.decode()
    assert client.post(judge).status_code == 403
    outsider = make_user("lead_elsewhere", "lead")
    client.force_login(outsider)
    assert client.post(judge).status_code == 404 and not Job.objects.filter(kind="judge_dataset").exists()
    client.force_login(users["lead"])
    html = client.get(page).content.decode()
    assert 'id="judge-form"' in html and f'action="{judge}"' in html
    assert f"with the promoted model: run #{run.pk} gland test model" in html and 'id="judge-job"' not in html
    assert client.get(judge).status_code == 405
    resp = client.post(judge)
    assert resp.status_code == 302 and resp["Location"] == page
    job = Job.objects.get(kind="judge_dataset")
    assert job.params == {"dataset_id": ds.pk, "run_id": run.pk, "force": False}
    assert job.created_by == users["lead"] and job.dataset_id == ds.pk  # the dataset's members follow it
    html = client.get(page).content.decode()
    assert f"judging every scan of {ds.name}: job #{job.pk}" in html
    assert f'<p id="judge-job" data-job-id="{job.pk}" data-follow>' in html and "frontend/js/jobs.js" in html
    # the API's call: the same one job while it is queued
    resp = client.post(f"/api/datasets/{ds.pk}/judge/", {}, content_type="application/json")
    assert resp.status_code == 202 and resp.json()["job"] == job.pk
    assert client.post(judge, {"force": "1"}).status_code == 302 and Job.objects.filter(kind="judge_dataset").count() == 1
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    client.post(judge, {"force": "1"})
    assert Job.objects.filter(kind="judge_dataset").latest("pk").params["force"] is True
    # a member of the dataset sees the job the lead started
    other_lead = make_user("lead_two", "lead")
    ds.members.add(other_lead)
    client.force_login(other_lead)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    # no promoted model: the page says why; a post queues nothing and says why
    bare = make_dataset("no-model", members=[users["lead"]])
    client.force_login(users["lead"])
    html = client.get(f"/store/datasets/{bare.pk}/").content.decode()
    assert 'id="judge-form"' not in html and "Judging every scan needs a model: no promoted model" in html
    resp = client.post(f"/store/datasets/{bare.pk}/judge/", follow=True)
    assert "no promoted model" in resp.content.decode()
    assert not Job.objects.filter(kind="judge_dataset", params__dataset_id=bare.pk).exists()


def test_a_submitter_follows_an_upload_to_its_verdict_and_can_always_open_it(here, users, make_user, gland_model,
                                                                             realct, client):
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import run_now
    from inference.models import Prediction
    from inference.tasks import predict_job

    run = gland_model(members=[users["clinician"]])  # the model's dataset; the upload lands outside it
    client.force_login(users["clinician"])
    resp = client.post("/verdicts/", {})
    assert resp.status_code == 400 and "send a series id or a file" in resp.content.decode()
    upload = SimpleUploadedFile("abdomen.nii.gz", realct["example_ct"].read_bytes())
    resp = client.post("/verdicts/", {"file": upload})
    assert resp.status_code == 302
    job = Job.objects.get(kind="predict", created_by=users["clinician"])
    assert resp["Location"] == f"/verdicts/jobs/{job.pk}/"
    html = client.get(resp["Location"]).content.decode()
    assert "data-reload-when-done" in html and 'id="side-findings"' not in html  # followed live until done
    job = run_now(predict_job, job)
    assert job.status == "succeeded", job.error
    p = Prediction.objects.get(job=job)
    html = client.get(f"/verdicts/jobs/{job.pk}/").content.decode()
    assert "data-reload-when-done" not in html and 'id="side-findings"' in html
    assert html.count('<tr data-side="') == 2 and f"run #{run.pk}" in html and "gland test model" in html
    cutoff = p.side_details["R"]["probability_cutoff"]  # each gland's probability shown beside its cut-off
    assert f"(abnormal from {cutoff:.3f})" in html and f"as a probability {cutoff:.3f}" in html
    # the predict document (predict --json, the job's result) gives the score the operating value applies to
    assert job.result["score"] == p.score and job.result["probability_cutoff"] == cutoff
    assert f'/series/{p.series_id}/?verdict={p.pk}&amp;z_mm=' in html and f"/api/predictions/{p.pk}/evidence/0.png" in html
    # listed on the submit page; the scan (in "Submitted studies") opens for its submitter and nobody else
    listing = client.get("/verdicts/").content.decode()
    assert f"/verdicts/jobs/{job.pk}/" in listing and "abdomen.nii.gz" in listing
    assert client.get(f"/series/{p.series_id}/").status_code == 200
    assert client.get(f"/api/predictions/{p.pk}/").json()["findings"][0]["side"] == "R"
    client.force_login(make_user("clin2", "clinician"))
    assert client.get(f"/series/{p.series_id}/").status_code == 404
    assert client.get(f"/api/predictions/{p.pk}/").status_code == 404
    assert client.get(f"/verdicts/jobs/{job.pk}/").status_code == 404
    # the submitter judges their scan again by its id; a malformed id is named, not a Python error
    resp = client.post("/verdicts/", {"series": "abc"})
    assert resp.status_code == 400 and "series: expected an id" in resp.content.decode()
    client.force_login(users["clinician"])
    resp = client.post("/api/predictions/", {"series": p.series_id}, content_type="application/json")
    assert resp.status_code == 202, resp.content
    again = run_now(predict_job, Job.objects.get(pk=resp.json()["job"]))
    assert again.status == "succeeded", again.error
    # another user uploads the same file: the one stored scan opens for both, each sees only their own verdicts
    other = make_user("clin3", "clinician")
    run.dataset.members.add(other)
    client.force_login(other)
    resp = client.post("/verdicts/", {"file": SimpleUploadedFile("same.nii.gz", realct["example_ct"].read_bytes())})
    theirs = run_now(predict_job, Job.objects.get(kind="predict", created_by=other))
    q = Prediction.objects.get(job=theirs)
    assert q.series_id == p.series_id  # deduplicated into one series
    assert client.get(f"/api/predictions/{p.pk}/").status_code == 404
    assert client.get(f"/api/predictions/{q.pk}/").status_code == 200
    assert client.get(f"/series/{q.series_id}/").context["prediction"]["id"] == q.pk  # the viewer shows theirs
    client.force_login(users["clinician"])
    assert client.get(f"/api/predictions/{q.pk}/").status_code == 404
    assert client.get(f"/series/{p.series_id}/").context["prediction"]["id"] == Prediction.objects.get(job=again).pk


def test_a_corrupt_stored_volume_is_one_scans_error_in_a_batch(here, users, gland_model, ct_series, client):
    """A stored volume that can no longer be read (a truncated or overwritten file) is reported naming its scan
    by every batch that meets it, judging a dataset and preparing the viewer's data, and the rest go on; the
    viewer's API answers with the reason instead of a server error."""
    from adrenal_site.jobs.runner import run_now
    from adrenal_site.storage import local_path
    from annotations.tasks import prepare_viewer, start_viewer_preparation
    from inference.models import Prediction
    from inference.tasks import judge_dataset_job, start_judge_dataset

    run = gland_model(members=[users["clinician"], users["lead"]])
    ds = run.dataset
    good = ct_series(dataset=ds, patient="P001")
    bad = ct_series(dataset=ds, patient="P002")
    local_path(bad.volume.file.name).write_bytes(b"\x00garbage, not a gzip stream" * 10)
    job = run_now(judge_dataset_job, start_judge_dataset(ds, users["lead"]))
    assert job.status == "succeeded", job.error
    assert job.result["judged"] == 1 and [e["series"] for e in job.result["errors"]] == [bad.pk]
    assert "gzip" in job.result["errors"][0]["error"] and Prediction.objects.filter(series=good, run=run).exists()
    prep = run_now(prepare_viewer, start_viewer_preparation([good.pk, bad.pk], send=False))
    assert prep.status == "succeeded", prep.error
    assert prep.result["prepared"] == [good.pk] and [f["series"] for f in prep.result["failed"]] == [bad.pk]
    client.force_login(users["clinician"])
    assert client.get(f"/series/{bad.pk}/").status_code == 200 and client.get(f"/api/series/{bad.pk}/volume/").status_code == 200
    for url in (f"/api/series/{bad.pk}/volume/slabs/0/", f"/api/series/{bad.pk}/volume/data/"):
        r = client.get(url)
        detail = r.json()["detail"]
        assert r.status_code == 500 and "cannot be read" in detail and "re-import" in detail and "/media/" not in detail


def test_an_upload_shares_a_stored_dicom_scan_only_when_it_holds_its_files(here, users, make_user, gland_model,
                                                                           tmp_path, client):
    """The importer knows a DICOM file by its SOP Instance UID, so an upload for a verdict whose UIDs were
    already stored was judged as that scan and opened it to its uploader: one file carrying the UIDs of another
    user's submission (its pixels anything) gave the whole CT volume. Now a user who may not see the scan shares
    it only with every instance, byte for byte; else the verdict is 'not assessable' naming why."""
    import io
    import zipfile

    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import run_now
    from annotations.models import Series
    from inference.tasks import predict_job
    from tests.plugins.store import write_ct_series

    run = gland_model(members=[users["clinician"]])  # the uploads land in "Submitted studies", outside it
    folder, _ = write_ct_series(tmp_path / "study", n=12, rows=48, cols=48)
    files = sorted(folder.iterdir())

    def zipped(entries: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
        return buffer.getvalue()

    def submit(user, data: bytes):
        run.dataset.members.add(user)
        client.force_login(user)
        resp = client.post("/verdicts/", {"file": SimpleUploadedFile("study.zip", data)})
        assert resp.status_code == 302, [m for m in resp.content.decode().splitlines() if "error" in m or "class=\"message" in m]
        job = run_now(predict_job, Job.objects.filter(kind="predict", created_by=user).latest("pk"))
        assert job.status == "succeeded", job.error
        return job

    whole = zipped({f"s/{p.name}": p.read_bytes() for p in files})
    first = submit(users["clinician"], whole)
    series = Series.objects.get(pk=first.result["series"])
    assert client.get(f"/series/{series.pk}/").status_code == 200
    # one file with the UIDs of the first slice and other pixels
    forged = bytearray(files[0].read_bytes())
    forged[-200:] = bytes(200)
    intruder = make_user("clin-forger", "clinician")
    job = submit(intruder, zipped({"x/1.dcm": bytes(forged)}))
    assert job.result.get("series") is None and "not judged" in job.result["reason"], job.result
    assert "do not hold byte for byte" in job.result["reason"]
    assert client.get(f"/series/{series.pk}/").status_code == 404
    assert client.get(f"/api/series/{series.pk}/volume/").status_code == 404
    # a part of the files, unchanged, is not the scan either
    job = submit(intruder, zipped({f"s/{p.name}": p.read_bytes() for p in files[:3]}))
    assert job.result.get("series") is None and client.get(f"/series/{series.pk}/").status_code == 404
    # the same files: one stored scan, opened for both
    job = submit(make_user("clin-same", "clinician"), whole)
    assert job.result["series"] == series.pk and client.get(f"/series/{series.pk}/").status_code == 200
