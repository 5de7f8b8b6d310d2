"""The API's answers against its own OpenAPI schema (``/api/schema/``, drf-spectacular), as a client generated
from the schema reads them: the status code of an answer is one the schema documents for that operation, and the
body's shape (a list or an object; a named component's fields) is the documented one. Probe F found writes
whose schema said 200 or 201 while they answer 202 (or 200 for a label that changed nothing), an import whose
documented answer was its request body, and a list documented as an object.

``assert_documented`` is the one check; each test drives real answers through it."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from adrenal_site.api_params import Pagination
from adrenal_site.jobs.models import Job
from annotations.models import Label
from tests.factories import make_dataset, make_job, make_run, make_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client_as):
    return client_as("admin").get("/api/schema/?format=json").json()


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def assert_documented(schema: dict, method: str, template: str, response) -> None:
    """``response`` (to ``method`` on the path ``template`` as the schema spells it) has a status the schema
    documents, and its JSON body the documented shape: an array or an object, and for a named component exactly
    its properties."""
    op = schema["paths"][template][method.lower()]
    code = str(response.status_code)
    assert code in op["responses"], (f"{method} {template} answered {code}; the schema documents "
                                     f"{sorted(op['responses'])}")
    content = op["responses"][code].get("content", {})
    if "application/json" not in content:
        return
    documented = content["application/json"]["schema"]
    named = "$ref" in documented
    documented = _resolve(schema, documented)
    body = response.json()
    kind = documented.get("type", "object")
    assert kind == ("array" if isinstance(body, list) else "object"), (
        f"{method} {template} answered a {type(body).__name__}; the schema says {kind}")
    if named and kind == "object" and "properties" in documented:
        assert set(body) == set(documented["properties"]), (
            f"{method} {template} answered fields {sorted(body)}; the schema's are {sorted(documented['properties'])}")


def test_import_start_is_documented_as_its_202_report(schema, client_as, users, settings, tmp_path):
    (tmp_path / "study").mkdir()
    settings.ADRENAL_IMPORT_ROOTS = [str(tmp_path)]
    ds = make_dataset("imports")
    r = client_as("admin").post(f"/api/datasets/{ds.pk}/imports/", {"path": "study"}, content_type="application/json")
    assert r.status_code == 202 and r.json()["job"]
    assert_documented(schema, "POST", "/api/datasets/{id}/imports/", r)
    settings.ADRENAL_IMPORT_ROOTS = []


def test_job_and_run_cancel_are_documented_as_202_and_409(schema, client_as, users):
    ds = make_dataset("cancel", members=[users["lead"]])
    c = client_as("lead")
    job = make_job(status=Job.Status.QUEUED, dataset_id=ds.pk, created_by=users["lead"])
    for expected in (202, 409):
        r = c.post(f"/api/jobs/{job.pk}/cancel/")
        assert r.status_code == expected
        assert_documented(schema, "POST", "/api/jobs/{id}/cancel/", r)
    run = make_run(ds, status=Job.Status.QUEUED)
    for expected in (202, 409):
        r = c.post(f"/api/runs/{run.pk}/cancel/")
        assert r.status_code == expected
        assert_documented(schema, "POST", "/api/runs/{id}/cancel/", r)


def test_judging_a_dataset_is_documented_as_202_and_409(schema, client_as, users):
    """Asking to judge a dataset while its judging job is queued with another model or not forced answers 409
    with the job (``{"detail", "job"}``), undocumented until probe R's fuzzing met it."""
    ds = make_dataset("judge", members=[users["lead"]])
    make_run(ds, promoted=True, operating_value=0.5)
    c = client_as("lead")
    for body, expected in (({}, 202), ({"force": True}, 409)):
        r = c.post(f"/api/datasets/{ds.pk}/judge/", body, content_type="application/json")
        assert r.status_code == expected, r.content
        assert_documented(schema, "POST", "/api/datasets/{id}/judge/", r)
    assert set(r.json()) == {"detail", "job"}


def test_a_stale_finding_is_documented_as_409(two_datasets):
    """A finding's PUT and restore on a stale version answer 409 with the current findings (``{"detail",
    "current"}``), as a box's do, but only the box's were documented (probe R)."""
    series = two_datasets.objects["series"]
    c = APIClient()
    c.force_login(two_datasets.users["clinician_a"])
    schema = c.get("/api/schema/?format=json").json()
    first = c.put(f"/api/series/{series.pk}/findings/R/", {"version": 0, "gland": "seen"},
                  content_type="application/json")
    assert first.status_code == 200, first.content
    for template, url, body in (("/api/series/{id}/findings/{side}/", f"/api/series/{series.pk}/findings/R/",
                                 {"version": 99, "gland": "seen"}),
                                ("/api/series/{id}/findings/{side}/restore/",
                                 f"/api/series/{series.pk}/findings/R/restore/", {"version": 99, "restore": 1})):
        method = "put" if template.endswith("{side}/") else "post"
        r = getattr(c, method)(url, body, content_type="application/json")
        assert r.status_code == 409 and "current" in r.json(), r.content
        assert_documented(schema, method.upper(), template, r)


def test_label_post_is_documented_as_201_new_and_200_unchanged(schema, client_as, users):
    series = make_series(make_dataset("labels", members=[users["admin"]]))
    url = f"/api/patients/{series.study.patient_id}/labels/"
    a = client_as("admin")
    for expected in (201, 200):  # the same label again changes nothing: 200 with the current one
        r = a.post(url, {"value": "abnormal", "side": "L"}, content_type="application/json")
        assert r.status_code == expected
        assert_documented(schema, "POST", "/api/patients/{id}/labels/", r)
    assert Label.objects.filter(patient_id=series.study.patient_id).count() == 1


def test_predictions_list_is_documented_as_a_list(schema, client_as):
    r = client_as("clinician").get("/api/predictions/")
    assert r.status_code == 200 and r.json() == []
    assert_documented(schema, "GET", "/api/predictions/", r)


def test_dataset_wide_lists_page_like_every_list(client_as, users, monkeypatch):
    """A dataset's worklist and its findings answered every row at once (a hospital's dataset: thousands of
    scans, two findings each), ignoring ``?limit=``: they now page as every list does (``adrenal_site.
    api_params.page_of``: default 200, at most 1000, ``count``/``next``/``previous`` beside the rows, a bad
    value a 400 naming it), while the worklist's ``counts`` and ``next_unconfirmed`` stay over all scans."""
    from annotations.models import SideFinding

    ds = make_dataset("paged", members=[users["clinician"]])
    scans = [make_series(ds, f"P{n:03d}") for n in range(5)]
    for s in scans:
        for side in "RL":
            SideFinding.objects.create(series=s, side=side)
    c = client_as("clinician")
    for url, key, total in ((f"/api/datasets/{ds.pk}/worklist/", "rows", 5),
                            (f"/api/datasets/{ds.pk}/findings/", "findings", 10)):
        whole = c.get(url).json()
        assert len(whole[key]) == whole["count"] == total and whole["next"] is None
        first = c.get(url, {"limit": 2}).json()
        assert len(first[key]) == 2 and first["count"] == total and "offset=2" in first["next"]
        last = c.get(url, {"limit": 2, "offset": total - 1}).json()
        assert last[key] == whole[key][-1:] and last["next"] is None and last["previous"]
        assert c.get(url, {"limit": "many"}).json() == {"limit": ["expected a whole number (at least 1), not 'many'"]}
    page = c.get(f"/api/datasets/{ds.pk}/worklist/", {"limit": 1, "offset": 3}).json()
    assert page["counts"]["total"] == 5 and page["next_unconfirmed"] == scans[0].pk
    monkeypatch.setattr(Pagination, "default_limit", 3)  # bounded without ?limit= (PAGE_SIZE, 200)
    assert len(c.get(f"/api/datasets/{ds.pk}/findings/").json()["findings"]) == 3
    assert len(c.get(f"/api/datasets/{ds.pk}/worklist/").json()["rows"]) == 3


def test_schema_lists_the_query_parameters_each_list_reads(schema):
    """The filters and paging the lists read (each checked, a 400 naming it otherwise) were missing from the
    schema: a client generated from it could not page the verdicts or filter the worklist, jobs or an
    evaluation's scans. They are now declared from the same tables the views check them against
    (``adrenal_site.api_schema.query_parameters``), enumerated values included."""
    from annotations.services.worklist import FILTER_CHOICES
    from inference.api.dashboard import SCAN_FILTERS

    def query(path):
        return {p["name"]: p["schema"] for p in schema["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}

    page = {"limit", "offset"}
    worklist = query("/api/datasets/{id}/worklist/")
    assert set(worklist) == {*FILTER_CHOICES, "q", *page}
    assert all(sorted(worklist[name]["enum"]) == sorted(values) for name, values in FILTER_CHOICES.items())
    assert set(query("/api/datasets/{id}/findings/")) == page
    assert set(query("/api/predictions/")) == {"series", "run", *page}
    jobs = query("/api/jobs/")
    assert set(jobs) == {"kind", "status", *page} and sorted(jobs["status"]["enum"]) == sorted(Job.Status.values)
    assert set(query("/api/evaluations/{id}/scans/")) == {*SCAN_FILTERS, "sort"}


def test_token_refusals_are_documented(schema, client, users):
    """``POST /api/auth/token/`` was documented with its 200 only: wrong credentials (400 with the field
    errors) and a blocked address (429 with ``{"detail"}``) were not in the schema."""
    url = "/api/auth/token/"
    good = client.post(url, {"username": "clin", "password": "pw-clin"})
    assert good.status_code == 200 and set(good.json()) == {"token"}
    assert_documented(schema, "POST", url, good)
    bad = client.post(url, {"username": "clin", "password": "wrong"})
    assert bad.status_code == 400 and "non_field_errors" in bad.json()
    assert_documented(schema, "POST", url, bad)
    assert "429" in schema["paths"][url]["post"]["responses"]


def test_schema_lists_the_query_parameters_of_the_other_reads(schema):
    """The same for the reads with one or two parameters: a dataset's series (``scans``), an evaluation's
    threshold, curves and prevalence (their query serializers' fields) and an evidence thumbnail (``size``)."""
    def query(path):
        return {p["name"] for p in schema["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}

    assert query("/api/datasets/{id}/series/") == {"scans", "limit", "offset"}
    assert query("/api/evaluations/{id}/threshold/") == {"value", "level", "aggregator"}
    assert query("/api/evaluations/{id}/curves/") == {"level", "aggregator"}  # it reads no value
    assert query("/api/evaluations/{id}/prevalence/") == {"prevalence", "value", "aggregator"}
    assert query("/api/predictions/{id}/evidence/{n}.png") == {"size"}


def _as_json_schema(schema: dict, node):
    """An OpenAPI 3.0 schema node as JSON Schema: references inlined, ``nullable`` as ``null`` allowed."""
    if isinstance(node, list):
        return [_as_json_schema(schema, n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _as_json_schema(schema, schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]])
    out = {k: _as_json_schema(schema, v) for k, v in node.items() if k != "nullable"}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out


def assert_valid_body(schema: dict, method: str, template: str, response) -> None:
    """``response``'s JSON body validates against the schema the operation documents for its status: every field
    of the documented type, ``null`` only where the schema says ``nullable``."""
    import jsonschema

    documented = schema["paths"][template][method.lower()]["responses"][str(response.status_code)]
    body_schema = _as_json_schema(schema, documented["content"]["application/json"]["schema"])
    errors = sorted(jsonschema.Draft7Validator(body_schema).iter_errors(response.json()), key=str)
    assert not errors, [f"{method} {template}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def _fill(template: str, world) -> str:
    """A schema path with dataset A's object for each ``{id}`` (by the collection before it), side R, slab 0."""
    ids = {**world.ids, "series": world.ids["series"]}
    parts = template.strip("/").split("/")
    out = []
    for i, part in enumerate(parts):
        if part == "{id}":
            part = str(ids[parts[i - 1]])
        out.append(part.replace("{side}", "R").replace("{n}", "0"))
    return "/" + "/".join(out) + ("/" if template.endswith("/") else "")


def test_every_json_read_answers_its_documented_shape(two_datasets, client):
    """Every GET of the schema whose answer is JSON, on dataset A's objects as an admin (who reaches every
    view): the status is documented and the body has the documented shape (``assert_documented``). Probe R
    found a run's evaluations, the run comparison and a box's and a finding's history, bare lists, documented as
    objects, and a box without its ``lps_min`` (one field instance under two names documents only the last); and
    the body validates against the documented schema (``assert_valid_body``): a job's ``created_by`` and
    ``duration_s`` and a label's ``created_by`` answered null where the schema said a string or a number."""
    from annotations.models import SideFinding

    SideFinding.objects.create(series=two_datasets.objects["series"], side="R")
    client.force_login(two_datasets.users["admin"])
    schema = client.get("/api/schema/?format=json").json()
    checked, problems = [], []
    for template, ops in schema["paths"].items():
        if "get" not in ops or "{sop_uid}" in template or template.startswith("/api/schema"):
            continue
        r = client.get(_fill(template, two_datasets))
        if r.status_code == 200 and r.get("Content-Type", "").startswith("application/json"):
            try:
                assert_documented(schema, "GET", template, r)
                assert_valid_body(schema, "GET", template, r)
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
            checked.append(template)
    assert not problems, problems
    assert {"/api/runs/{id}/evaluations/", "/api/runs/compare/", "/api/series/{id}/boxes/{side}/history/",
            "/api/series/{id}/findings/{side}/history/", "/api/series/{id}/boxes/{side}/"} <= set(checked)


def test_every_operation_documents_the_refusals_it_answers(two_datasets):
    """Every operation of the schema, as anonymous (401), as a member of dataset B only on A's objects (403 or
    404), with a NUL in a query parameter (400) and, as the admin, with a text/plain body (415): the refusal's
    status is documented for that operation and its body has the documented shape. Probe R: a client generated
    from the schema (schemathesis) met 400, 401, 403 and 404 on nearly every operation, which documented its
    success only (``adrenal_site.api_schema.AutoSchema``), and 415 on every write sent a body of another media
    type (text/plain)."""
    admin = APIClient()
    admin.force_login(two_datasets.users["admin"])
    schema = admin.get("/api/schema/?format=json").json()
    anonymous, outsider, member = APIClient(), APIClient(), APIClient()
    outsider.force_login(two_datasets.users["clinician_b"])
    member.force_login(two_datasets.users["lead_a"])
    problems, seen = [], set()
    for template, ops in schema["paths"].items():
        url = _fill(template, two_datasets)
        for method in ops:
            for who, client, query, media in (("anonymous", anonymous, "", "application/json"),
                                              ("B's clinician", outsider, "", "application/json"),
                                              ("A's lead", member, "?limit=%00", "application/json"),
                                              ("the admin", admin, "", "text/plain")):
                if (method == "delete" and who == "A's lead") or (who == "the admin" and method in ("get", "delete")):
                    continue  # a real deletion, not a refusal; a body only where one is read
                r = getattr(client, method)(url + query, "hello" if media == "text/plain" else "", content_type=media)
                if r.status_code not in (400, 401, 403, 404, 415):
                    continue
                seen.add(r.status_code)
                try:
                    assert_documented(schema, method.upper(), template, r)
                    assert_valid_body(schema, method.upper(), template, r)
                except AssertionError as e:
                    problems.append(f"{who}: {str(e).splitlines()[0]}")
    assert not problems, problems
    assert seen == {400, 401, 403, 404, 415}


def test_every_integer_query_parameter_documents_the_range_it_takes(two_datasets):
    """``?limit=``, ``?offset=`` and an evidence thumbnail's ``?size=`` were documented as any integer, so a
    client generated from the schema sent ``limit=-95`` or ``size=9`` as valid requests and met a 400. Each
    integer query parameter of every GET now says its ``minimum`` (and ``maximum`` where there is one): a value
    at a bound is not refused for it, one past it is a 400 naming it."""
    client = APIClient()
    client.force_login(two_datasets.users["admin"])
    schema = client.get("/api/schema/?format=json").json()
    checked, problems = set(), []
    for template, ops in schema["paths"].items():
        if "get" not in ops or "{sop_uid}" in template:
            continue
        url = _fill(template, two_datasets)
        for p in ops["get"].get("parameters", []):
            if p["in"] != "query" or p["schema"].get("type") != "integer":
                continue
            name, bounds = p["name"], p["schema"]
            if "minimum" not in bounds:
                problems.append(f"{template} ?{name}= has no minimum")
                continue
            for edge, outside in ((bounds["minimum"], bounds["minimum"] - 1),
                                  (bounds.get("maximum"), (bounds.get("maximum") or 0) + 1)):
                if edge is None:
                    continue
                at = client.get(url, {name: edge})
                past = client.get(url, {name: outside})
                if (at.status_code == 400 and name in at.json()) or past.status_code != 400 or name not in past.json():
                    problems.append(f"{template} ?{name}={edge}: {at.status_code}, ={outside}: {past.status_code}")
            checked.add(name)
    assert not problems, problems
    assert {"limit", "offset", "size"} <= checked
