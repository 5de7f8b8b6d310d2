"""Training pages and API: a lead starts a run from the browser form and the API, sees its page with folds,
cancels it, promotes a finished one; clinicians and other datasets' leads are refused."""
from __future__ import annotations

import json

import pytest
from django.urls import reverse

from adrenal_site.jobs.models import Job
from inference.models import FoldRun, TrainingRun
from tests.factories import set_status


@pytest.fixture
def cohort(db, settings, tmp_path, training_cohort, users):
    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("pages-ds", n_patients=10)
    ds.members.add(users["lead"])
    return ds


def test_lead_starts_run_from_form_sees_page_and_cancels(cohort, client_as, django_capture_on_commit_callbacks):
    c = client_as("lead")
    page = c.get(reverse("runs"))
    assert page.status_code == 200 and b"Start a run" in page.content and b"pages-ds" in page.content
    with django_capture_on_commit_callbacks(execute=False):
        r = c.post(reverse("runs"), {"dataset": cohort.pk, "preset": "tiny", "epochs": "2", "name": "from form"})
    run = TrainingRun.objects.get()
    assert r.status_code == 302 and r.url == reverse("run-detail", args=[run.pk])
    assert run.config["epochs"] == 2 and run.preset == "tiny" and run.name == "from form"
    assert run.folds.count() == 5 and Job.objects.get(pk=run.job_id).kind == "train"
    detail = c.get(r.url)
    assert detail.status_code == 200 and b"Learning curves" in detail.content and b"Cancel run" in detail.content
    doc = c.get(f"/api/runs/{run.pk}/").json()
    assert [f["fold"] for f in doc["folds"]] == [0, 1, 2, 3, 4] and doc["split"]["test_patients"]
    assert c.post(reverse("run-cancel", args=[run.pk])).status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled" and Job.objects.get(pk=run.job_id).status == "cancelled"
    assert {f.status for f in FoldRun.objects.filter(run=run)} == {"cancelled"}
    lead = Job.objects.get(pk=run.job_id).cancelled_by
    assert lead is not None and Job.objects.get(pk=run.job_id).message == f"cancelled by {lead.username}"
    assert f"cancelled by {lead.username}".encode() in c.get(reverse("run-detail", args=[run.pk])).content
    # promoting an unfinished run is refused with a reason
    r = c.post(f"/api/runs/{run.pk}/promote/")
    assert r.status_code == 409 and "only a finished run" in r.json()["detail"]


def test_api_start_promote_and_roles(cohort, client_as, users, django_capture_on_commit_callbacks):
    c = client_as("lead")
    with django_capture_on_commit_callbacks(execute=False):
        r = c.post("/api/runs/start/", json.dumps({"dataset": cohort.pk, "preset": "tiny", "overrides": {"epochs": 1}}),
                   content_type="application/json")
    assert r.status_code == 201, r.content
    run = TrainingRun.objects.get(pk=r.json()["id"])
    bad = c.post("/api/runs/start/", json.dumps({"dataset": cohort.pk, "preset": "huge"}), content_type="application/json")
    assert bad.status_code == 400 and "huge" in str(bad.json()["preset"])  # 400 naming the field
    set_status(run, "succeeded")
    TrainingRun.objects.filter(pk=run.pk).update(version=1)
    # finished but not evaluated: refused as the command refuses it (every verdict would refuse the run); before,
    # the API and the run page promoted it and the DICOM node's and "judge every scan"'s verdicts then failed
    r = c.post(f"/api/runs/{run.pk}/promote/")
    assert r.status_code == 409 and "evaluate it first" in r.json()["detail"]
    assert c.post(reverse("run-promote", args=[run.pk])).status_code == 302
    assert not TrainingRun.objects.get(pk=run.pk).promoted
    TrainingRun.objects.filter(pk=run.pk).update(operating_value=0.5)
    assert c.post(f"/api/runs/{run.pk}/promote/").json()["promoted"] is True
    assert b"promoted" in c.get(reverse("runs")).content
    clin = client_as("clinician")
    assert clin.get(f"/api/runs/{run.pk}/").status_code == 403
    assert clin.get(reverse("run-detail", args=[run.pk])).status_code == 403
    c.logout()
    assert c.get(f"/api/runs/{run.pk}/").status_code in (401, 403)


def test_api_cancel_of_a_finished_run_is_409_as_for_a_job(cohort, client_as, django_capture_on_commit_callbacks):
    """Cancelling a run that already finished answered 200 and did nothing, while the jobs API answers 409 for a
    finished job: both now say 409 naming the state; a live run's cancel is 202, as a job's."""
    from inference.tasks import start_run

    c = client_as("lead")
    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(cohort, "tiny")
    r = c.post(f"/api/runs/{run.pk}/cancel/")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert Job.objects.get(pk=run.job_id).message.startswith("cancelled by ")
    again = c.post(f"/api/runs/{run.pk}/cancel/")
    assert again.status_code == 409 and again.json()["detail"] == f"Run {run.pk} is already cancelled."
    job = c.post(f"/api/jobs/{run.job_id}/cancel/")
    assert job.status_code == 409 and "cancelled" in job.json()["detail"]
    set_status(run, "succeeded")
    done = c.post(f"/api/runs/{run.pk}/cancel/")
    assert done.status_code == 409 and "succeeded" in done.json()["detail"]
    assert TrainingRun.objects.get(pk=run.pk).status == "succeeded"
    page = c.post(reverse("run-cancel", args=[run.pk]), follow=True)  # the page says so too
    assert b"already succeeded" in page.content


def test_lead_of_another_dataset_does_not_see_the_run(cohort, make_user, client, django_capture_on_commit_callbacks):
    from inference.tasks import start_run

    with django_capture_on_commit_callbacks(execute=False):
        run = start_run(cohort, "tiny")
    other = make_user("lead2", "lead")
    client.force_login(other)
    assert client.get(f"/api/runs/{run.pk}/").status_code == 404
    assert client.get(reverse("run-detail", args=[run.pk])).status_code == 404
    assert client.post(f"/api/runs/{run.pk}/cancel/").status_code == 404


def test_lead_queues_image_build_from_runs_page(cohort, client_as, django_capture_on_commit_callbacks):
    c = client_as("lead")
    with django_capture_on_commit_callbacks(execute=False):
        r = c.post(reverse("images-build"), {"dataset": cohort.pk, "use_proposed": "1"})
    assert r.status_code == 302
    job = Job.objects.get(kind="images25d")
    assert job.params == {"dataset_id": cohort.pk, "series_ids": None, "use_proposed": True}
    page = c.get(reverse("runs"))
    assert f'data-job-id="{job.pk}"'.encode() in page.content
    assert client_as("clinician").post(reverse("images-build"), {"dataset": cohort.pk}).status_code == 403


def test_a_run_not_started_yet_does_not_say_random_init(cohort, client_as, django_capture_on_commit_callbacks):
    """The run page said "weights: random init" for a queued 'fast' run (its weights, the pretrained lesion
    detector, are written by the train job), and kept saying it while the folds trained. Until the train job
    has chosen them it says so; then the weights; 'none' is random init."""
    c = client_as("lead")
    with django_capture_on_commit_callbacks(execute=False):
        c.post(reverse("runs"), {"dataset": cohort.pk, "preset": "fast", "epochs": "2", "name": "queued"})
    run = TrainingRun.objects.get()
    assert run.config["pretrained"] == "auto" and run.pretrained == ""
    page = c.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert '<span id="run-weights">chosen when training starts (auto)</span>' in page and "random init" not in page
    TrainingRun.objects.filter(pk=run.pk).update(pretrained="adrenal-lesions:lesion_net-v1.pt:sha256=efc5")
    page = c.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert '<span id="run-weights">pretrained (adrenal-lesions:lesion_net-v1.pt:sha256=efc5)</span>' in page
    TrainingRun.objects.filter(pk=run.pk).update(pretrained="", config={**run.config, "pretrained": "none"})
    page = c.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert '<span id="run-weights">random init</span>' in page


def test_a_run_names_the_markers_it_did_not_use_by_a_link_to_their_scan(cohort, client_as,
                                                                         django_capture_on_commit_callbacks):
    """"Not used: series 2 R (the label calls this side normal)" gave the scan's database id as "series 2", which
    reads as the DICOM series number the viewer's overlay shows ("Series 2" on every demo scan). It names
    "scan #2" and links to it in the viewer."""
    from annotations.models import Series

    c = client_as("lead")
    with django_capture_on_commit_callbacks(execute=False):
        c.post(reverse("runs"), {"dataset": cohort.pk, "preset": "fast", "epochs": "2", "name": "markers"})
    run = TrainingRun.objects.get()
    series = Series.objects.filter(study__patient__dataset=cohort, is_scan=True).first()
    run.config = {**run.config, "lesion_markers": {"sides": 0, "scans": 0, "z_mm": {}, "unused": [
        {"series": series.pk, "side": "R", "why": "the label calls this side normal"}]}}
    run.save(update_fields=["config"])
    page = c.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert (f'Not used: <a href="/series/{series.pk}/">scan #{series.pk}</a> R (the label calls this side '
            f'normal)') in page
