"""Object-level access: every URL pattern of the project (from the resolver, so new ones are covered) x roles,
on objects of dataset A. Members of dataset B only (clinician and lead) get 403/404 on every URL addressing
an A object, for every method, and never see A's data in any list or page; A's members and admins do."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from adrenal_site.jobs.models import Job
from annotations.models import Dataset
from tests.plugins.security import MARKERS, all_routes, has_object, url_for

pytestmark = pytest.mark.django_db

ROUTES = all_routes()
OUTSIDERS = ("clinician_b", "lead_b")
PUBLIC = {"login", "logout", "api-token", "favicon"}


def rows(response) -> list:
    data = response.json()
    return data["results"] if isinstance(data, dict) and "results" in data else data


def leaked(response) -> list[str]:
    body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
    text = body.decode("utf-8", "replace")
    return [m for m in MARKERS if m in text]


@pytest.mark.parametrize("role", OUTSIDERS)
def test_members_of_b_get_nothing_of_a_on_any_url(two_datasets, role):
    world = two_datasets
    api = APIClient()
    api.force_login(world.users[role])
    problems = []
    for route, pattern in ROUTES:
        if pattern.name in PUBLIC:
            continue  # logging out would end the session the walk uses
        url = url_for(route, world)
        for method in ("get", "post", "put", "delete"):
            r = getattr(api, method)(url, {}, format="json") if method != "get" else api.get(url)
            if has_object(route):
                if r.status_code not in (401, 403, 404, 405):
                    problems.append(f"{method.upper()} {url}: {r.status_code}")
            elif r.status_code < 500 and leaked(r):
                problems.append(f"{method.upper()} {url}: {r.status_code} shows {leaked(r)}")
            elif r.status_code >= 500:
                problems.append(f"{method.upper()} {url}: {r.status_code}")
    assert not problems, "\n".join(problems)
    job = Job.objects.get(pk=world.ids["jobs"])
    assert job.status == Job.Status.RUNNING and not job.cancel_requested


def test_anonymous_users_get_nothing(two_datasets):
    world, api = two_datasets, APIClient()
    for route, p in ROUTES:
        if p.name in PUBLIC:
            continue
        url = url_for(route, world)
        r = api.get(url)
        assert r.status_code in (301, 302, 401, 403), (url, r.status_code)
        assert not leaked(r), url


@pytest.mark.parametrize("role", ["lead_a", "admin"])
def test_a_members_and_admins_see_and_cancel_a_jobs(two_datasets, role):
    world = two_datasets
    api = APIClient()
    api.force_login(world.users[role])
    listed = [j["id"] for j in rows(api.get("/api/jobs/"))]
    assert world.ids["jobs"] in listed
    assert api.get(f"/jobs/{world.ids['jobs']}/").status_code == 200
    assert "alpha-job-message" in api.get("/").content.decode()
    assert [r["id"] for r in rows(api.get("/api/runs/"))] == [world.objects["run"].pk] or role == "admin"
    r = api.post(f"/api/jobs/{world.ids['jobs']}/cancel/")
    assert r.status_code == 202 and Job.objects.get(pk=world.ids["jobs"]).cancel_requested


def test_lists_show_only_visible_rows(two_datasets):
    world = two_datasets
    api = APIClient()
    api.force_login(world.users["lead_b"])
    assert [r["name"] for r in rows(api.get("/api/runs/"))] == ["bravo-run"]
    bravo = Dataset.objects.get(name="bravo").pk
    assert {Job.objects.get(pk=r["id"]).dataset_id for r in rows(api.get("/api/jobs/"))} <= {bravo}  # B's only
    assert world.ids["jobs"] not in [r["id"] for r in rows(api.get("/api/jobs/"))]
    assert rows(api.get("/api/predictions/")) == []
    api.force_login(world.users["clinician_a"])
    assert [p["id"] for p in rows(api.get("/api/predictions/"))] == [world.ids["predictions"]]
    assert api.get("/api/jobs/").status_code == 200  # clinicians follow their datasets' jobs
    assert api.post(f"/api/jobs/{world.ids['jobs']}/cancel/").status_code == 403  # leads cancel


def test_a_clinician_cannot_run_another_datasets_model(two_datasets):
    world = two_datasets
    api = APIClient()
    api.force_login(world.users["clinician_a"])
    series, run_b = world.objects["series"], world.objects["run_b"]
    r = api.post("/api/predictions/", {"series": series.pk, "run": run_b.pk}, format="json")
    assert r.status_code == 400 and r.json() == {"run": [f"no training run {run_b.pk}"]}
    assert not Job.objects.filter(kind="predict", params__run_id=run_b.pk).exists()
    # B's clinician cannot run A's model on B's scans, nor submit A's scan
    api.force_login(world.users["clinician_b"])
    r = api.post("/api/predictions/", {"series": series.pk}, format="json")
    assert r.status_code in (400, 404)
    # the dataset's own promoted model is allowed for its members
    api.force_login(world.users["clinician_a"])
    r = api.post("/api/predictions/", {"series": series.pk}, format="json")
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job"])
    assert job.params["run_id"] == world.objects["run"].pk and job.dataset_id == world.a.pk


def test_a_lead_cannot_judge_a_dataset_with_another_datasets_model(two_datasets):
    """``POST /api/datasets/<B>/judge/ {"run": <A's run>}`` by B's lead queued B's scans to be judged with A's
    model (202, a judge_dataset job with A's run), and told A's runs apart from ids that are no run by the answer
    ("run N is failed" against "no training run N"). A named run must be one of the user's datasets, as for one
    verdict; B's own model still judges B."""
    world = two_datasets
    api = APIClient()
    api.force_login(world.users["lead_b"])
    run_a, run_b = world.objects["run"], world.objects["run_b"]
    r = api.post(f"/api/datasets/{world.b.pk}/judge/", {"run": run_a.pk}, format="json")
    assert r.status_code == 400 and r.json() == {"run": [f"no training run {run_a.pk}"]}, r.content
    assert not Job.objects.filter(kind="judge_dataset", params__run_id=run_a.pk).exists()
    r = api.post(f"/api/datasets/{world.b.pk}/judge/", {"run": run_b.pk}, format="json")
    assert r.status_code == 202 and r.json()["run"] == run_b.pk, r.content


def test_uploaders_open_their_own_submissions(two_datasets):
    from annotations.models import Dataset
    from inference.models import Prediction
    from tests.factories import make_job, make_series

    world = two_datasets
    submitted = Dataset.objects.create(name="Submitted studies")
    series = make_series(submitted, "PS1", series_uid="5.5.5.1")
    user = world.users["clinician_b"]
    series.submitted_by.add(user)  # as the upload records it
    job = make_job("predict", Job.Status.SUCCEEDED, created_by=user)
    p = Prediction.objects.create(series=series, run=world.objects["run_b"], verdict="normal", job=job,
                                  created_by=user)
    api = APIClient()
    api.force_login(user)
    assert api.get(f"/api/predictions/{p.pk}/").status_code == 200
    assert api.get(f"/api/jobs/{job.pk}/").status_code == 200
    assert api.get(f"/jobs/{job.pk}/").status_code == 200
    api.force_login(world.users["lead_b"])  # not theirs, not a member
    assert api.get(f"/api/predictions/{p.pk}/").status_code == 404
    assert api.get(f"/api/jobs/{job.pk}/").status_code == 404


def test_a_submitter_is_not_led_to_other_peoples_uploads(two_datasets):
    """"Next unconfirmed" from a scan one submitted to "Submitted studies" (a dataset one is no member of) answered
    the next scan of the whole dataset: another user's upload, its id and URL, and how many of them wait for
    review. It goes only to scans the user may open now; the viewer shows the dataset's name without a link to a
    worklist that would answer 404. A member still goes through every scan of the dataset."""
    from tests.factories import make_series

    world = two_datasets
    submitted = Dataset.objects.create(name="Submitted studies")
    mine = make_series(submitted, "PS1", series_uid="5.5.5.1")
    theirs = [make_series(submitted, f"PS{i}", series_uid=f"5.5.5.{i}") for i in (2, 3)]
    user, other = world.users["clinician_b"], world.users["clinician_a"]
    mine.submitted_by.add(user)
    theirs[0].submitted_by.add(other)
    theirs[1].submitted_by.add(other)
    api = APIClient()
    api.force_login(user)
    r = api.get(f"/api/series/{mine.pk}/next-unconfirmed/")
    assert r.status_code == 200 and r.json() == {"series_id": None, "url": None, "remaining": 0}
    page = api.get(f"/series/{mine.pk}/").content.decode()
    assert f'href="/datasets/{submitted.pk}/"' not in page and 'id="dataset-name"' in page
    api.force_login(world.users["admin"])  # sees the whole dataset
    r = api.get(f"/api/series/{mine.pk}/next-unconfirmed/").json()
    assert r["series_id"] in {s.pk for s in theirs} and r["remaining"] == 2
    assert f'href="/datasets/{submitted.pk}/"' in api.get(f"/series/{mine.pk}/").content.decode()


def test_removed_members_lose_the_jobs_and_verdicts_they_started_there(two_datasets):
    """A lead and a clinician of A removed from A (still signed in) no longer see, follow or cancel the jobs they
    started on A, nor the verdict the clinician asked for on A's scan, in the API or the pages: before, both kept
    them (an import job to cancel, the verdict's scores) because jobs and verdicts were also their starter's."""
    world = two_datasets
    lead, clinician = world.users["lead_a"], world.users["clinician_a"]
    job = Job.objects.get(pk=world.ids["jobs"])
    pjob = Job.objects.get(kind="predict", dataset_id=world.a.pk)
    assert job.created_by == lead and pjob.created_by == clinician
    api = APIClient()
    api.force_login(lead)
    assert api.get(f"/api/jobs/{job.pk}/").status_code == 200
    world.a.members.remove(lead, clinician)
    assert api.get(f"/api/jobs/{job.pk}/").status_code == 404
    assert job.pk not in [r["id"] for r in rows(api.get("/api/jobs/"))]
    assert api.get(f"/jobs/{job.pk}/").status_code == 404
    assert "alpha-job-message" not in api.get("/").content.decode()
    assert api.post(f"/api/jobs/{job.pk}/cancel/").status_code == 404
    assert not Job.objects.get(pk=job.pk).cancel_requested
    api.force_login(clinician)
    assert rows(api.get("/api/predictions/")) == []
    assert api.get(f"/api/predictions/{world.ids['predictions']}/").status_code == 404
    assert api.get(f"/api/jobs/{pjob.pk}/").status_code == 404
    assert api.get(f"/verdicts/jobs/{pjob.pk}/").status_code == 404
    assert "alpha-verdict-reason" not in api.get("/verdicts/").content.decode()



def test_removed_members_verdicts_page_no_longer_lists_what_they_asked_for_there(two_datasets):
    """The verdicts page's "your submissions" listed every predict job its user had started, with the scan's
    pseudonym and the verdict, also after they were removed from the scan's dataset (the job's own page and the
    API already said 404). It lists what they may still see."""
    world = two_datasets
    clinician = world.users["clinician_a"]
    pjob = Job.objects.get(kind="predict", dataset_id=world.a.pk)
    api = APIClient()
    api.force_login(clinician)
    assert f'data-job-id="{pjob.pk}"' in api.get("/verdicts/").content.decode()
    world.a.members.remove(clinician)
    page = api.get("/verdicts/").content.decode()
    assert f'data-job-id="{pjob.pk}"' not in page and f"#{pjob.pk}<" not in page

def test_jobs_carry_their_dataset(two_datasets, django_capture_on_commit_callbacks):
    from annotations.tasks import start_import, start_proposals
    from inference.tasks import start_evaluation

    world = two_datasets
    assert start_import(world.a, "/nonexistent", send=False).dataset_id == world.a.pk
    assert start_proposals(series_ids=[world.ids["series"]], send=False).dataset_id == world.a.pk
    with django_capture_on_commit_callbacks(execute=False):
        assert start_evaluation(world.objects["run"], "accuracy").dataset_id == world.a.pk
