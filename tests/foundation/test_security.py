"""Deployment security: the Content-Security-Policy of every page (and pages that need no inline script or
style), job errors without tracebacks or server paths for non-admins, sign-in throttling, the admin role in the
Django admin, `setup_site --demo` only with DEBUG, HTTPS settings from the environment and `check --deploy`."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from tests.conftest import REPO
from tests.factories import make_dataset, make_job, make_run, make_series, make_split

SERVER_PATH = "/srv/adrenal/media/uploads/3f2a/files/P001/scan.nii.gz"
TRACEBACK = ("Traceback (most recent call last):\n"
             '  File "/opt/app/annotations/services/importer.py", line 283, in import_nifti\n'
             "    entry = read_nifti_entry(path)\n"
             f"FileNotFoundError: [Errno 2] No such file or directory: '{SERVER_PATH}'\n")


def csp_directives(response) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']}: no Content-Security-Policy"
    return {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}


def assert_no_inline_code(html: str, where: str) -> None:
    """No inline <script> (json_script data blocks aside), no on...= handlers, no style attributes."""
    for m in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S):
        attrs, body = m.group(1), m.group(2)
        assert "src=" in attrs or 'type="application/json"' in attrs, f"{where}: inline script {m.group(0)[:120]}"
        assert "src=" not in attrs or not body.strip(), f"{where}: script with src and a body"
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), f"{where}: inline event handler"
    assert not re.search(r"<[^>]+\sstyle\s*=", html), f"{where}: style attribute"
    assert "<style" not in html, f"{where}: <style> element"


@pytest.fixture
def site(users):
    ds = make_dataset("csp", members=[users["clinician"], users["lead"]])
    series = make_series(ds, "P001")
    run = make_run(ds, make_split(ds, ["P001"], [[], []]))
    job = make_job("import", created_by=users["lead"])
    return {"ds": ds, "series": series, "run": run, "job": job}


def test_every_page_sends_a_csp_without_inline_script_and_needs_none(client_as, site, client):
    ds, series, run, job = site["ds"], site["series"], site["run"], site["job"]
    pages = {
        None: ["/accounts/login/"],
        "clinician": ["/", "/store/", f"/store/datasets/{ds.pk}/", f"/datasets/{ds.pk}/", f"/series/{series.pk}/",
                      "/api/docs/", "/api/docs/redoc/", "/datasets/999999/", "/runs/"],
        "lead": ["/runs/", f"/runs/{run.pk}/", f"/runs/{run.pk}/dashboard/", "/runs/compare/", f"/jobs/{job.pk}/"],
        "admin": ["/admin/", "/admin/auth/user/", "/admin/auth/user/add/", "/store/datasets/new/",
                  f"/store/datasets/{ds.pk}/import/"],
    }
    seen = 0
    for role, urls in pages.items():
        c = client_as(role) if role else client
        for url in urls:
            r = c.get(url)
            assert r.status_code in (200, 403, 404), (url, r.status_code)
            d = csp_directives(r)
            for directive in ("script-src", "default-src"):
                assert "'unsafe-inline'" not in d[directive] and "'unsafe-eval'" not in d[directive], (url, d)
            assert d["script-src"] == ["'self'"] and d["object-src"] == ["'none'"], (url, d)
            assert_no_inline_code(r.content.decode(), url)
            seen += 1
    assert seen == sum(len(u) for u in pages.values())
    # the API and static files carry it too; only Redoc's page allows inline styles (its own CSS-in-JS)
    assert csp_directives(client_as("clinician").get("/api/datasets/"))["script-src"] == ["'self'"]
    assert "'unsafe-inline'" in csp_directives(client_as("clinician").get("/api/docs/redoc/"))["style-src"]
    assert "'unsafe-inline'" not in csp_directives(client_as("clinician").get("/api/docs/"))["style-src"]


def test_swagger_start_up_script_is_served_as_a_file(client_as):
    c = client_as("clinician")
    page = c.get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    src = re.search(r'<script src="([^"]*\?script[^"]*)"', page).group(1).replace("&amp;", "&")
    r = c.get(src)
    assert r.status_code == 200 and "SwaggerUIBundle" in r.content.decode()
    redoc = c.get("/api/docs/redoc/").content.decode()
    assert "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in redoc and "googleapis" not in redoc


def test_schema_describes_the_prediction_upload_as_multipart(client_as):
    schema = client_as("clinician").get("/api/schema/?format=json").json()
    body = schema["paths"]["/api/predictions/"]["post"]["requestBody"]["content"]
    upload = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][upload]["properties"]
    assert fields["file"]["format"] == "binary" and "dataset" in fields
    assert "application/json" in body
    for path in ("/api/runs/{id}/", "/api/evaluations/{id}/scans/", "/api/predictions/{id}/dicom.zip"):
        assert path in schema["paths"], path


# --- what non-admins read of a job's failure -----------------------------------------------------------------

def test_job_errors_reach_non_admins_without_traceback_or_server_paths(client_as, users):
    from adrenal_site.jobs.models import Job
    from tests.factories import make_dataset

    ds = make_dataset("errors", members=[users["clinician"], users["lead"]])  # both may see the dataset's jobs
    job = Job.objects.create(kind="import", task_name="annotations.tasks.import_studies", status=Job.Status.FAILED,
                             dataset_id=ds.pk,
                             message=f"FileNotFoundError: [Errno 2] No such file or directory: '{SERVER_PATH}'",
                             error=TRACEBACK, worker="cpu@web-host-7", created_by=users["clinician"],
                             result={"failed": [{"path": SERVER_PATH}]})
    for role in ("clinician", "lead"):
        c = client_as(role)
        doc = c.get(f"/api/jobs/{job.pk}/").json()
        page = c.get(f"/jobs/{job.pk}/").content.decode()
        home = c.get("/").content.decode()
        for text in (str(doc), page, home):
            assert "/srv/adrenal" not in text and "Traceback" not in text and "importer.py" not in text, role
        assert doc["message"] == "FileNotFoundError: [Errno 2] No such file or directory: '…/scan.nii.gz'"
        assert doc["error"] == doc["message"] and doc["worker"] == ""
        assert doc["result"] == {"failed": [{"path": "…/scan.nii.gz"}]}
        assert "No such file or directory" in page
    admin = client_as("admin")
    doc = admin.get(f"/api/jobs/{job.pk}/").json()
    assert doc["error"] == TRACEBACK and doc["worker"] == "cpu@web-host-7"
    assert "Traceback" in admin.get(f"/jobs/{job.pk}/").content.decode()


def test_a_cancel_answer_reads_as_the_job_does_for_that_user(client_as, users):
    """The cancel endpoint's answer is the job as the canceller may read it: the admin sees the worker and the
    unredacted message (it was built without the request, so as for an anonymous reader), a lead neither."""
    from adrenal_site.jobs.models import Job
    from tests.factories import make_dataset

    ds = make_dataset("cancel-answer", members=[users["lead"]])
    for role in ("admin", "lead"):
        job = Job.objects.create(kind="import", task_name="annotations.tasks.import_studies",
                                 status=Job.Status.RUNNING, dataset_id=ds.pk, worker="cpu@web-host-7",
                                 message=f"reading {SERVER_PATH}", created_by=users["lead"])
        doc = client_as(role).post(f"/api/jobs/{job.pk}/cancel/").json()
        if role == "admin":
            assert doc["worker"] == "cpu@web-host-7" and SERVER_PATH in doc["message"]
        else:
            assert doc["worker"] == "" and "/srv/adrenal" not in doc["message"]


def test_job_texts_on_verdict_dashboard_and_dataset_pages_have_no_server_paths(client_as, users):
    """The verdict pages (the submissions list, a submission's page with its job's message and the reason of a
    job that made no verdict), the run dashboard's and the dataset page's "judging every scan" job showed the
    job's message as stored: a failed job's ``FileNotFoundError: ... '/srv/adrenal/...'`` reached clinicians and
    leads there, while the job's API and page already left server paths out. Every page reads them alike now."""
    from adrenal_site.jobs.models import Job

    ds = make_dataset("paths", members=[users["clinician"], users["lead"]])
    make_series(ds, "P001")
    run = make_run(ds, make_split(ds, ["P001"], [[], []]))
    failed = f"FileNotFoundError: [Errno 2] No such file or directory: '{SERVER_PATH}'"
    predict = make_job("predict", Job.Status.FAILED, task_name="inference.tasks.predict_job", dataset_id=ds.pk,
                       created_by=users["clinician"], message=failed, error=TRACEBACK)
    nothing = make_job("predict", Job.Status.SUCCEEDED, task_name="inference.tasks.predict_job", dataset_id=ds.pk,
                       created_by=users["clinician"], message="not assessable",
                       result={"reason": f"no usable scan: x.nii: cannot read '{SERVER_PATH}'"})
    make_job("judge_dataset", Job.Status.FAILED, task_name="inference.tasks.judge_dataset_job", dataset_id=ds.pk,
             created_by=users["lead"], message=failed, params={"dataset_id": ds.pk, "run_id": run.pk})
    pages = {"clinician": ["/verdicts/", f"/verdicts/jobs/{predict.pk}/", f"/verdicts/jobs/{nothing.pk}/"],
             "lead": [f"/runs/{run.pk}/dashboard/", f"/store/datasets/{ds.pk}/"]}
    for role, urls in pages.items():
        c = client_as(role)
        for url in urls:
            page = c.get(url).content.decode()
            assert "/srv/adrenal" not in page and "Traceback" not in page, (role, url)
            assert "…/scan.nii.gz" in page, (role, url)  # the message is there, without where the file lies
    admin = client_as("admin")
    assert SERVER_PATH in admin.get(f"/verdicts/jobs/{predict.pk}/").content.decode()


def test_patient_folders_of_an_import_reach_admins_only(client_as, users):
    """A series' ``extra["excluded_instances"]`` keeps each excluded file's path in the import, as
    ``abnormal/<patient folder>/...``: the folder is often the patient's name, and with a blank PatientID the very
    id the pseudonym is made from. ``GET /api/datasets/<id>/series/`` gave it to every member; clinicians and
    leads now read the file's name (which the reason names too), admins the whole path."""
    ds = make_dataset("folders", members=[users["clinician"], users["lead"]])
    series = make_series(ds, "P001")
    reason = "odd instance odd.dcm excluded: orientation coronal (series: axial)"
    series.extra = {"acquisition_number": 1,  # as the importer writes it (annotations.services.importer)
                    "excluded_instances": [{"path": "abnormal/SMITH_JOHN_1958/abdomen/odd.dcm", "reason": reason}]}
    series.save(update_fields=["extra"])
    for role in ("clinician", "lead"):
        doc = client_as(role).get(f"/api/datasets/{ds.pk}/series/").json()
        extra = doc["results"][0]["extra"] if isinstance(doc, dict) else doc[0]["extra"]
        assert "SMITH_JOHN" not in str(doc), role
        assert extra == {"acquisition_number": 1, "excluded_instances": [{"path": "odd.dcm", "reason": reason}]}
    doc = client_as("admin").get(f"/api/datasets/{ds.pk}/series/").json()
    assert "abnormal/SMITH_JOHN_1958/abdomen/odd.dcm" in str(doc)


def test_leads_cannot_name_server_files_as_a_runs_weights(two_datasets, tmp_path):
    """``POST /api/runs/start/`` with ``{"overrides": {"pretrained": PATH}}``: a lead's run took any file of the
    server as its starting weights, and the answer told files that exist ("dataset has no labelled scans", or
    a new run) from files that do not ("no weights file at ..."): a map of the server's files, and a way to start
    from another dataset's model. A lead's run takes 'auto' or 'none', refused alike whatever the path; admins
    (and the command line) still name a weights file."""
    from rest_framework.test import APIClient

    from inference.models import TrainingRun

    world = two_datasets
    weights = tmp_path / "start.pt"
    weights.write_bytes(b"not read here")
    api = APIClient()
    api.force_login(world.users["lead_a"])
    before = TrainingRun.objects.count()
    answers = []
    for path in (str(weights), "/etc/hostname", str(tmp_path / "no-such-file.pt")):
        r = api.post("/api/runs/start/", {"dataset": world.a.pk, "preset": "tiny", "overrides": {"pretrained": path}},
                     format="json")
        assert r.status_code == 400, (path, r.content)
        answers.append(r.json()["overrides"][0].replace(path, "PATH"))
    assert len(set(answers)) == 1 and answers[0].startswith("pretrained: expected 'auto' or 'none'"), answers
    assert TrainingRun.objects.count() == before
    r = api.post("/api/runs/start/", {"dataset": world.a.pk, "preset": "tiny", "overrides": {"pretrained": "none"}},
                 format="json")
    assert r.status_code == 201, r.content
    api.force_login(world.users["admin"])
    r = api.post("/api/runs/start/", {"dataset": world.a.pk, "preset": "tiny",
                                      "overrides": {"pretrained": str(weights)}}, format="json")
    assert r.status_code == 201 and r.json()["config"]["pretrained"] == str(weights), r.content


def test_a_runs_weights_reach_non_admins_without_server_paths(client_as, users):
    """A run records the file its weights started from (``TrainingRun.pretrained``: the shipped LesionNet, the
    torch hub's ImageNet file, or a path an admin named), and the run's page and ``/api/runs/`` gave leads that
    absolute path. They read the file's name now (``…/lesion_net-v1.pt``), as a job's message; admins the path."""
    shipped = "/opt/adrenal/app/inference/ml/weights/lesion_net-v1.pt"
    named = "/srv/adrenal/weights/start-from-here.pt"
    ds = make_dataset("weights", members=[users["lead"]])
    run = make_run(ds, make_split(ds, ["P001"], [[], []]), pretrained=shipped,
                   config={"preset": "tiny", "backbone": "tiny_cnn", "pretrained": named})
    c = client_as("lead")
    texts = [str(c.get(f"/api/runs/{run.pk}/").json()), str(c.get("/api/runs/").json()),
             c.get(f"/runs/{run.pk}/").content.decode()]
    for text in texts:
        assert "/opt/adrenal" not in text and "/srv/adrenal" not in text
        assert "…/lesion_net-v1.pt" in text and "start-from-here.pt" in text  # (the page's JSON writes … as \\u2026)
    doc = client_as("admin").get(f"/api/runs/{run.pk}/").json()
    assert doc["pretrained"] == shipped and doc["config"]["pretrained"] == named


def test_path_redaction_keeps_urls_and_relative_text():
    from adrenal_site.jobs.public import without_paths

    assert without_paths("see https://host/a/b/c and /api/jobs/4/") == "see https://host/a/b/c and …/4"
    assert without_paths("epoch 3/20 done") == "epoch 3/20 done"
    assert without_paths(r"C:\data\in\x.dcm failed") == "…\\x.dcm failed"


# --- caching of what carries patient data ---------------------------------------------------------------------

def test_pages_api_answers_and_downloads_are_not_stored_in_caches(two_datasets):
    """Pages, API answers and exports with patient data (pseudonyms, verdicts, DICOM text) went out with no
    Cache-Control at all, so a shared proxy or the browser's disk cache could keep them after sign-out. Every one
    is ``no-store, private`` now unless its view asks for caching: the viewer's slabs and evidence thumbnails stay
    in the signed-in user's own browser (``private, max-age``); static files keep WhiteNoise's headers."""
    from rest_framework.test import APIClient

    world = two_datasets
    series, run, prediction = world.objects["series"], world.objects["run"], world.objects["prediction"]
    api = APIClient()
    api.force_login(world.users["lead_a"])
    urls = ["/", f"/datasets/{world.a.pk}/", f"/series/{series.pk}/", f"/store/datasets/{world.a.pk}/",
            "/verdicts/", f"/runs/{run.pk}/dashboard/", f"/runs/{run.pk}/evaluation.csv",
            f"/runs/{run.pk}/evaluation.json", f"/jobs/{world.ids['jobs']}/", f"/api/datasets/{world.a.pk}/worklist/",
            f"/api/series/{series.pk}/volume/", f"/api/predictions/{prediction.pk}/", "/api/jobs/",
            f"/api/evaluations/{world.ids['evaluations']}/scans/", "/api/nothing-here/", "/datasets/999999/"]
    for url in urls:
        r = api.get(url)
        cache_control = {d.strip() for d in r.get("Cache-Control", "").split(",")}
        assert {"no-store", "private"} <= cache_control, (url, r.status_code, r.get("Cache-Control"))
    slab = api.get(f"/api/series/{series.pk}/volume/slabs/0/")
    assert slab.status_code == 200 and slab["Cache-Control"] == "private, max-age=86400"
    assert "no-store" in APIClient().get("/accounts/login/").get("Cache-Control", "")


# --- sign-in throttling --------------------------------------------------------------------------------------

def test_login_page_refuses_after_repeated_failures(client, users, settings):
    cache.clear()
    settings.ADRENAL_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        assert client.post("/accounts/login/", {"username": "clin", "password": "wrong"}).status_code == 200
    r = client.post("/accounts/login/", {"username": "clin", "password": "pw-clin"})  # right, but blocked
    assert r.status_code == 429 and int(r["Retry-After"]) > 0 and "Too many failed sign-in" in r.content.decode()
    # the token endpoint and the admin login share the count
    r = client.post("/api/auth/token/", {"username": "clin", "password": "pw-clin"})
    assert r.status_code == 429
    r = client.post("/admin/login/", {"username": "clin", "password": "pw-clin"})
    assert r.status_code == 200 and "_auth_user_id" not in client.session
    # another user from the same address is not blocked yet; a success clears that user's count
    assert client.post("/accounts/login/", {"username": "lead", "password": "pw-lead"}).status_code == 302
    cache.clear()


def test_token_endpoint_is_rate_limited(client, users, settings):
    cache.clear()
    settings.ADRENAL_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        assert client.post("/api/auth/token/", {"username": "lead", "password": "nope"}).status_code == 400
    r = client.post("/api/auth/token/", {"username": "lead", "password": "pw-lead"})
    assert r.status_code == 429 and "Too many failed sign-in attempts" in r.json()["detail"]
    cache.clear()
    from adrenal_site.accounts.throttle import TokenRateThrottle

    assert TokenRateThrottle().get_rate() == settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token"]


# --- the admin role in the Django admin ----------------------------------------------------------------------

def test_admin_role_manages_users_in_the_django_admin(client, users, django_user_model):
    from django.contrib.auth.models import Group

    admin_user = users["admin"]
    assert not admin_user.is_staff and not admin_user.is_superuser  # only the group
    r = client.post("/admin/login/?next=/admin/", {"username": "adm", "password": "pw-adm", "next": "/admin/"})
    assert r.status_code == 302 and r["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 200
    r = client.post("/admin/auth/user/add/", {"username": "newclin", "password1": "a-long-pass-123",
                                              "password2": "a-long-pass-123", "usable_password": "true"})
    assert r.status_code == 302, r.content.decode()[:2000]
    new = django_user_model.objects.get(username="newclin")
    clinician = Group.objects.get(name="clinician")
    r = client.post(f"/admin/auth/user/{new.pk}/change/", {
        "username": "newclin", "is_active": "on", "groups": [clinician.pk], "last_login_0": "", "last_login_1": "",
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    assert r.status_code == 302, r.content.decode()[:2000]
    assert list(new.groups.values_list("name", flat=True)) == ["clinician"]
    # a lead is no admin
    client.force_login(users["lead"])
    assert client.get("/admin/auth/user/").status_code == 302


# --- demo only with DEBUG; HTTPS settings; check --deploy --------------------------------------------------

def test_setup_site_demo_is_refused_when_debug_is_off(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="needs DEBUG=1"):
        call_command("setup_site", "--demo")
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username__in=["clinician", "lead", "admin"]).exists()


PRODUCTION = {"SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
              "SECURE_COOKIES": "1", "SECURE_PROXY_SSL_HEADER": "1", "ALLOWED_HOSTS": "adrenal.example.org"}


def production_env(tmp_path, **extra) -> dict:
    # a production process's environment: not the test session's (the browser plugins set
    # DJANGO_ALLOW_ASYNC_UNSAFE for the live server, which check --deploy rightly refuses)
    env = {k: v for k, v in os.environ.items()
           if k not in {"DEBUG", "ADRENAL_LOCAL_SECRET", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", *PRODUCTION}}
    env.update(PRODUCTION, ADRENAL_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="adrenal_site.settings",
               SECRET_KEY="s3cr3t-" + "x7Qp" * 15, **extra)
    return env


def test_https_settings_come_from_the_environment(tmp_path):
    probe = ("import json, django; django.setup(); from django.conf import settings as s; print(json.dumps(["
             "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE,"
             " s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=production_env(tmp_path), capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == '[true, 31536000, true, true, true, ["HTTP_X_FORWARDED_PROTO", "https"]]'
    plain = {k: v for k, v in production_env(tmp_path).items() if k not in PRODUCTION}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=plain, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[false, 0, false, false, false, null]"  # make run: plain http


# Documented choices (README "Deployment"): HSTS preload is opt-in (SECURE_HSTS_PRELOAD=1), a commitment to the
# browsers' preload lists that a deployment makes for its own domain.
DOCUMENTED = {"security.W021"}


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=REPO, env=production_env(tmp_path),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    found = set(re.findall(r"\(([\w.]+\.[EW]\d+)\)", out.stdout + out.stderr))
    assert found <= DOCUMENTED, out.stdout + out.stderr


@pytest.mark.parametrize("value, cell", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"), ("+ contrast", "'+ contrast"),
    ("-ve", "'-ve"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("-40.0 -35.0", "'-40.0 -35.0"),
    ("-40.0", "-40.0"), ("+3", "+3"), (-12.5, -12.5), (None, None), ("P0a1", "P0a1"), ("a=b", "a=b"), ("", ""),
    ("-inf", "'-inf"), ("-nan", "'-nan"),
])
def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text(value, cell):
    from adrenal_site.spreadsheet import safe_cell

    assert safe_cell(value) == cell
