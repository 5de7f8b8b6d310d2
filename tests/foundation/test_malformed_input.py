"""No 500 on malformed input: every write endpoint and every filtered list, enumerated from the URL resolver (new
endpoints are covered), gets each malformed shape, as an admin (who reaches every view) on dataset A's objects,
and must answer below 500; refusals of a field name it.

Shapes: huge integers (10**30), 1e400, NaN/"nan", lists where objects belong and objects where lists belong,
strings where numbers belong, booleans, unknown enum values (an unknown aggregator), ``?series=abc``, corrupt zips,
deeply nested JSON, an empty body and a wrong content type."""
from __future__ import annotations

import io
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotations.models import SideFinding
from inference.models import TrainingRun
from tests.plugins.security import all_routes, url_for

pytestmark = pytest.mark.django_db

ROUTES = [(r, p) for r, p in all_routes() if p.name not in ("login", "logout", "favicon")]

BAD = [10**30, "1e400", "nan", "abc", True, [[1, 2], {"a": 1}], {"x": {"y": 1}}, None, -1, 0.5]
RAW_BODIES = [
    ("application/json", "1e400"), ("application/json", '{"value": NaN, "version": Infinity}'),
    ("application/json", "[" * 5000 + "]" * 5000), ("application/json", '{"a":' * 3000 + "1" + "}" * 3000),
    ("application/json", ""), ("application/json", "[]"), ("application/json", '"text"'),
    ("application/json", "{not json"), ("text/plain", "value=1"), ("application/xml", "<a/>"),
]
QUERY_PARAMS = ["series", "run", "dataset", "value", "level", "aggregator", "sort", "outcome", "verdict", "label",
                "status", "kind", "scans", "q", "z_mm", "page", "format", "objective", "side"]
QUERY_BAD = ["abc", "1e400", "nan", "-1", str(10**30), "[]", "{}", "\x00", "%"]


def base_body(world) -> dict:
    """Plausible values for every field any endpoint reads; each test mutates one."""
    return {"series": world.ids["series"], "run": world.objects["run"].pk, "dataset": world.a.pk,
            "lps_min": [3.0, 3.0, 3.0], "lps_max": [20.0, 20.0, 20.0], "version": 1, "restore": 1,
            "status": "proposed", "objective": "accuracy", "preset": "tiny", "overrides": {}, "name": "x",
            "value": "normal", "note": "", "gland": "seen", "lesion_centre_lps": [5.0, 5.0, 5.0],
            "lesion_diameter_mm": 5.0, "comment": "", "path": "/nonexistent", "labels_csv": "", "description": "",
            "series_rule": "all", "username": "admin_x", "password": "wrong"}


def writable(pattern) -> list[str]:
    cls = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
    if cls is None:
        return ["post"]  # function views: pages with forms
    return [m for m in ("post", "put", "patch") if hasattr(cls, m)]


@pytest.fixture
def admin_api(two_datasets):
    api = APIClient()
    api.force_login(two_datasets.users["admin"])
    api.raise_request_exception = False  # a crash is a 500 answer to count, not an exception in the test
    return api


def check(problems: list, r, label: str) -> None:
    if r.status_code >= 500:
        problems.append(f"{label}: {r.status_code}")


def is_api(route: str) -> bool:
    return route.startswith("api/")


def test_every_write_endpoint_survives_malformed_json_fields(two_datasets, admin_api):
    """API: each field of a plausible body replaced by each bad value, and bodies of the wrong shape. Pages (HTML
    forms, which send text): every field at once, and each field alone, as a bad string."""
    world, problems = two_datasets, []
    base = base_body(world)
    for route, pattern in ROUTES:
        url = url_for(route, world)
        for method in writable(pattern):
            send = getattr(admin_api, method)
            if is_api(route):
                for field in base:
                    for bad in BAD:
                        r = send(url, {**base, field: bad}, format="json")
                        check(problems, r, f"{method.upper()} {url} {field}={bad!r}"[:160])
                for bad in BAD:  # the whole body of the wrong shape
                    check(problems, send(url, bad, format="json"), f"{method.upper()} {url} body={bad!r}"[:160])
                continue
            for bad in QUERY_BAD:
                r = send(url, {field: bad for field in base}, format="multipart")
                check(problems, r, f"{method.upper()} {url} all={bad!r}")
            for field in base:
                for bad in ("abc", "1e400", str(10**30)):
                    r = send(url, {field: bad}, format="multipart")
                    check(problems, r, f"{method.upper()} {url} {field}={bad!r}")
    assert not problems, "\n".join(problems[:80])


def test_every_write_endpoint_survives_malformed_bodies(two_datasets, admin_api):
    world, problems = two_datasets, []
    for route, pattern in ROUTES:
        url = url_for(route, world)
        for method in writable(pattern):
            send = getattr(admin_api, method)
            for content_type, body in RAW_BODIES:
                r = send(url, body, content_type=content_type)
                check(problems, r, f"{method.upper()} {url} {content_type} {body[:30]!r}")
            for name in ("file", "archive", "labels"):  # a corrupt zip in any file field
                upload = io.BytesIO(b"PK\x03\x04" + b"\x00" * 64)
                upload.name = "corrupt.zip"
                r = send(url, {name: upload, "dataset": str(world.a.pk)}, format="multipart")
                check(problems, r, f"{method.upper()} {url} corrupt zip in {name}")
            r = send(url, {"series": "abc", "dataset": "1e400", "run": "nan"}, format="multipart")
            check(problems, r, f"{method.upper()} {url} form strings")
    assert not problems, "\n".join(problems[:80])


def test_every_get_survives_malformed_query_params(two_datasets, admin_api):
    """Every URL with every filter at once set to each bad value; API URLs also with each filter alone."""
    world, problems = two_datasets, []
    for route, pattern in ROUTES:
        url = url_for(route, world)
        for bad in QUERY_BAD:
            r = admin_api.get(url, {p: bad for p in QUERY_PARAMS})
            check(problems, r, f"GET {url} all={bad!r}")
            if not is_api(route) or route in ("api/schema/", "api/docs/"):
                continue
            for p in QUERY_PARAMS:
                r = admin_api.get(url, {p: bad})
                check(problems, r, f"GET {url}?{p}={bad!r}")
    assert not problems, "\n".join(problems[:80])


@pytest.mark.parametrize("url,params,field", [
    ("/api/predictions/", {"series": "abc"}, "series"),
    ("/api/predictions/", {"run": "1e400"}, "run"),
    ("/api/evaluations/{ev}/threshold/", {"value": "nan"}, "value"),
    ("/api/evaluations/{ev}/threshold/", {"value": "1e400"}, "value"),
    ("/api/evaluations/{ev}/curves/", {"aggregator": "median-of-nothing"}, "aggregator"),
    ("/api/evaluations/{ev}/threshold/", {"aggregator": "median-of-nothing"}, "aggregator"),
    ("/api/evaluations/{ev}/curves/", {"level": "galaxy"}, "level"),
])
def test_bad_query_params_are_400_naming_the_field(two_datasets, admin_api, url, params, field):
    r = admin_api.get(url.format(ev=two_datasets.ids["evaluations"]), params)
    assert r.status_code == 400 and field in r.json(), (r.status_code, r.content[:300])


def test_an_enumerated_query_param_read_by_a_serializer_names_the_values_it_takes(two_datasets, admin_api):
    """README: a value that is not one of a filter's values is a 400 naming the parameter and the values it takes.
    ``?level=`` of the threshold and curves answered DRF's '"galaxy" is not a valid choice.', naming none."""
    ev = two_datasets.ids["evaluations"]
    for url, values in ((f"/api/evaluations/{ev}/curves/", "image, scan, patient"),
                        (f"/api/evaluations/{ev}/threshold/", "scan, patient")):
        r = admin_api.get(url, {"level": "galaxy"})
        assert r.status_code == 400 and r.json() == {"level": [f"unknown value 'galaxy'; one of {values}"]}, r.json()
        assert admin_api.get(url, {"level": "scan"}).status_code == 200


@pytest.mark.parametrize("body,field", [
    ({"series": 10**30}, "series"), ({"series": "abc"}, "series"), ({"series": [1]}, "series"),
    ({"series": True}, "series"), ({"run": 1e300}, "run"), ({"dataset": {"id": 1}}, "dataset"),
])
def test_prediction_submission_names_the_field(two_datasets, admin_api, body, field):
    r = admin_api.post("/api/predictions/", body, format="json")
    assert r.status_code == 400 and field in r.json(), (r.status_code, r.content[:300])


def test_a_run_or_dataset_the_service_refuses_is_a_field_error_naming_it(two_datasets):
    """A verdict asked with a run that is no run of the user's datasets, a dataset the user is no member of, or
    a dataset judged with such a run, answered ``{"detail": "no training run 7"}``: a 400 naming no field, against
    the rule that field errors are lists under the field (``{"run": ["..."]}``), as the serializer's own are.
    The service's refusals of the run (``RunUnavailable``) and of the dataset (``Dataset.DoesNotExist``) now
    answer under their field, on every endpoint that resolves a run; and a run started on a dataset the lead is no
    member of, a 404 for an id in the body (no object in the path), is the same field error."""
    world = two_datasets
    api = APIClient()
    api.force_login(world.users["clinician_b"])
    run_a, series_b = world.objects["run"], world.b.patients.get().studies.get().series.get()
    r = api.post("/api/predictions/", {"series": series_b.pk, "run": run_a.pk}, format="json")
    assert r.status_code == 400 and r.json() == {"run": [f"no training run {run_a.pk}"]}, r.content
    upload = SimpleUploadedFile("scan.nii.gz", b"\x1f\x8b", content_type="application/gzip")
    r = api.post("/api/predictions/", {"file": upload, "dataset": world.a.pk}, format="multipart")
    assert r.status_code == 400 and r.json() == {"dataset": [f"no dataset {world.a.pk} you may see"]}, r.content
    api.force_login(world.users["lead_b"])
    TrainingRun.objects.filter(pk=world.objects["run_b"].pk).update(promoted=False)
    r = api.post(f"/api/datasets/{world.b.pk}/judge/", {}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["run"] and "no promoted model" in r.json()["run"][0]
    r = api.post("/api/runs/start/", {"dataset": world.a.pk, "preset": "tiny"}, format="json")
    assert r.status_code == 400 and r.json() == {"dataset": [f"no dataset {world.a.pk} you may see"]}, r.content


@pytest.mark.parametrize("body,field", [
    ({"dataset": 10**30}, "dataset"), ({"dataset": "abc"}, "dataset"), ({"overrides": []}, "overrides"),
    ({"preset": ["fast"]}, "preset"), ({"name": {"a": 1}}, "name"),
])
def test_run_start_names_the_field(two_datasets, admin_api, body, field):
    r = admin_api.post("/api/runs/start/", {"dataset": two_datasets.a.pk, "preset": "tiny", **body}, format="json")
    assert r.status_code == 400 and field in r.json(), (r.status_code, r.content[:300])


def test_a_nul_in_any_query_parameter_is_a_400_naming_it(two_datasets, admin_api):
    """PostgreSQL text columns refuse NUL: a ``%00`` in a filter once reached the database as a 500 there."""
    for url in ("/api/jobs/?status=%00", "/api/predictions/?series=1%00", "/?x=%00"):
        r = admin_api.get(url)
        assert r.status_code == 400, (url, r.status_code)
    assert "not allowed" in str(admin_api.get("/api/jobs/?kind=a%00b").json()["kind"])


# ---------------------------------------------------------------- integers from the request: bounded, never a 500

def paginated_lists(world) -> list[str]:
    """Every API list that pages its results (DRF's ListModelMixin), from the resolver: new lists are covered."""
    from rest_framework.mixins import ListModelMixin

    urls = []
    for route, pattern in ROUTES:
        cls = getattr(pattern.callback, "cls", None)
        if is_api(route) and cls is not None and issubclass(cls, ListModelMixin):
            urls.append(url_for(route, world))
    return urls


HUGE = "999999999999999999999"  # past 64 bits: SQLite 'datatype mismatch', PostgreSQL 'bigint out of range'


def test_every_paged_list_bounds_limit_and_offset(two_datasets, admin_api):
    """?limit= past the largest page is read as the largest page (README: 1000); a limit or offset that is not a
    whole number in range is a 400 naming it; neither reaches the database as a 500 (it did, for every list)."""
    world = two_datasets
    urls = paginated_lists(world)
    a = world.a.pk
    assert {"/api/datasets/", "/api/jobs/", "/api/runs/", f"/api/datasets/{a}/series/",
            f"/api/datasets/{a}/patients/", f"/api/datasets/{a}/imports/"} <= set(urls), urls
    problems = []
    for url in urls:
        for limit in (HUGE, str(2**63), "9" * 5000):
            r = admin_api.get(url, {"limit": limit})
            if r.status_code != 200 or "results" not in r.json():
                problems.append(f"{url}?limit={limit[:25]}: {r.status_code}")
        for name, bad in [("limit", "abc"), ("limit", "0"), ("limit", "-1"), ("limit", "1.5"), ("limit", "1_0"),
                          ("offset", HUGE), ("offset", str(2**31)), ("offset", "-1"), ("offset", "abc")]:
            r = admin_api.get(url, {name: bad})
            if r.status_code != 400 or name not in r.json():
                problems.append(f"{url}?{name}={bad}: {r.status_code} {r.content[:120]!r}")
        page = admin_api.get(url, {"limit": "1", "offset": "0"}).json()
        if len(page["results"]) > 1:
            problems.append(f"{url}?limit=1: {len(page['results'])} results")
    assert not problems, "\n".join(problems)


def test_the_predictions_list_takes_limit_and_offset_like_every_list(two_datasets, admin_api):
    """``/api/predictions/`` answers a bare list (newest first), bounded and checked by the same ``Pagination``."""
    for name, bad in [("limit", "abc"), ("limit", "0"), ("offset", "-1"), ("offset", HUGE)]:
        r = admin_api.get("/api/predictions/", {name: bad})
        assert r.status_code == 400 and name in r.json(), (name, bad, r.content[:120])
    assert admin_api.get("/api/predictions/", {"limit": HUGE}).status_code == 200
    assert isinstance(admin_api.get("/api/predictions/", {"limit": "1", "offset": "0"}).json(), list)


def test_the_largest_page_is_the_documented_maximum(rf):
    from rest_framework.request import Request

    from adrenal_site.api_params import MAX_PAGE_SIZE, Pagination

    assert MAX_PAGE_SIZE == 1000  # README says so
    for limit, read in [("5", 5), ("1000", 1000), ("1001", 1000), (HUGE, 1000), ("", 200)]:
        assert Pagination().get_limit(Request(rf.get("/", {"limit": limit}))) == read, limit


def test_ids_in_the_path_past_the_database_range_are_404(two_datasets, admin_api):
    """Every ``<int:...>`` of every API route at 2**63 and 10**21: Django's lookups answer "no such row" on
    SQLite and PostgreSQL alike, so it is a JSON 404 (405 where the route has no GET), never a 500."""
    import re

    problems = []
    for route, _ in ROUTES:
        if not is_api(route) or "<int:" not in route:
            continue
        for big in (str(2**63), HUGE):
            url = url_for(re.sub(r"<int:\w+>", big, route), two_datasets)
            r = admin_api.get(url)
            if r.status_code not in (404, 405) or "json" not in r.get("Content-Type", ""):
                problems.append(f"GET {url}: {r.status_code} {r.get('Content-Type')}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- enumerated filters: an unknown value is a 400

SCANS = "/api/evaluations/{ev}/scans/"


@pytest.mark.parametrize("url,param,allowed", [
    ("/api/datasets/{a}/worklist/", "status", ["none", "proposed", "confirmed", "not_covered"]),
    ("/api/datasets/{a}/worklist/", "verdict", ["normal", "abnormal", "not_assessable", "none"]),
    ("/api/datasets/{a}/worklist/", "label", ["normal", "abnormal", "none"]),
    (SCANS, "outcome", ["fn", "fp", "tp", "tn"]),
    (SCANS, "verdict", ["normal", "abnormal"]),
    (SCANS, "label", ["normal", "abnormal"]),
    (SCANS, "sort", ["probability", "outcome", "-probability"]),
    ("/api/jobs/", "status", ["queued", "running", "succeeded", "failed", "cancelled"]),
    ("/api/jobs/", "kind", ["import", "train", "predict"]),
    ("/api/datasets/{a}/series/", "scans", ["1", "true", "0", "false"]),
])
def test_an_unknown_filter_value_is_a_400_naming_the_parameter_and_its_values(two_datasets, admin_api, url, param,
                                                                               allowed):
    """Once ``?status=zzz`` of the worklist and ``?outcome=zzz`` of an evaluation answered an empty 200 (and
    ``?scans=zzz`` every series) while a bad ``sort`` was a 400: every enumerated filter now refuses alike."""
    comma_list = url == SCANS and param != "sort"  # ?outcome=fn,fp
    url = url.format(a=two_datasets.a.pk, ev=two_datasets.ids["evaluations"])
    for bad in ("zzz", "ZZZ") + ((f"{allowed[0]},zzz",) if comma_list else ()):
        r = admin_api.get(url, {param: bad})
        assert r.status_code == 400, (url, param, bad, r.status_code)
        message = " ".join(r.json()[param])
        assert "zzz" in message.lower() and all(v.lstrip("-") in message for v in allowed), message
    for good in allowed:
        assert admin_api.get(url, {param: good}).status_code == 200, (url, param, good)


def test_known_filter_values_still_filter(two_datasets, admin_api):
    world = two_datasets
    rows = admin_api.get(f"/api/datasets/{world.a.pk}/worklist/", {"status": "proposed"}).json()["rows"]
    assert rows and {r["box_status"] for r in rows} == {"proposed"}
    scans = admin_api.get(f"/api/evaluations/{world.ids['evaluations']}/scans/").json()["scans"]
    outcomes = {s["outcome"] for s in scans}
    some = min(outcomes)
    picked = admin_api.get(f"/api/evaluations/{world.ids['evaluations']}/scans/", {"outcome": some}).json()["scans"]
    assert picked and {s["outcome"] for s in picked} == {some}
    jobs = admin_api.get("/api/jobs/", {"kind": "import", "status": "running"}).json()["results"]
    assert [j["id"] for j in jobs] == [world.objects["job"].pk]
    series = admin_api.get(f"/api/datasets/{world.a.pk}/series/", {"scans": "1"}).json()["results"]
    assert [s["id"] for s in series] == [world.ids["series"]]


# ---------------------------------------------------------------- Django's own request limits name themselves


def test_a_request_over_djangos_limits_is_refused_naming_the_limit(users, settings):
    """A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` or a query of more fields than ``DATA_UPLOAD_MAX_NUMBER_FIELDS``
    is refused by Django before any view; it answered ``{"detail": "Bad request."}`` (a page: 'Bad Request
    (400)'), which names nothing. Now 413 / 400 with the limit, in JSON under /api/ and as text on pages."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024**2
    api = APIClient()
    api.force_login(users["clinician"])
    api.raise_request_exception = False  # Django's refusal is an answer to check, not an exception in the test
    body = '{"series": 1, "note": "' + "a" * (2 * 1024**2) + '"}'
    r = api.post("/api/predictions/", body, content_type="application/json")
    assert r.status_code == 413 and r.json() == {
        "detail": "the request body is over the limit of 1 MB (files go in a multipart upload)"}
    r = api.get("/api/jobs/?" + "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)))
    assert r.status_code == 400 and "more than 1000 parameters" in r.json()["detail"]
    page = api.post("/accounts/login/", "username=a&password=" + "b" * (2 * 1024**2),
                    content_type="application/x-www-form-urlencoded")
    assert page.status_code == 413 and b"over the limit of 1 MB" in page.content


def test_writes_of_json_numbers_read_json_only(two_datasets, admin_api):
    """The box and finding writes and a dataset's judging take JSON numbers and booleans only (``annotations.api.
    strict``), yet read forms too and the schema offered application/x-www-form-urlencoded and multipart/form-data:
    a form sends every value as text, so the same valid values sent as a form were refused field by field
    (``{"version": ["expected a whole number (a JSON integer, ...)"]}``, ``{"force": ["true or false"]}``). They
    read JSON only (``adrenal_site.parsers.JSON_ONLY``): a form is a 415 naming its media type, the schema lists
    JSON alone, and JSON still works."""
    world = two_datasets
    series = world.ids["series"]
    SideFinding.objects.create(series=world.objects["series"], side="R")
    schema = admin_api.get("/api/schema/?format=json").json()
    writes = [("put", "/api/series/{id}/boxes/{side}/", f"/api/series/{series}/boxes/R/",
               {"lps_min": [3.0, 3.0, 3.0], "lps_max": [20.0, 20.0, 20.0], "version": 1}),
              ("post", "/api/series/{id}/boxes/{side}/confirm/", f"/api/series/{series}/boxes/R/confirm/",
               {"version": 1}),
              ("post", "/api/series/{id}/boxes/{side}/undo/", f"/api/series/{series}/boxes/R/undo/", {"version": 1}),
              ("post", "/api/series/{id}/boxes/{side}/redo/", f"/api/series/{series}/boxes/R/redo/", {"version": 1}),
              ("post", "/api/series/{id}/boxes/{side}/restore/", f"/api/series/{series}/boxes/R/restore/",
               {"version": 1, "restore": 1}),
              ("put", "/api/series/{id}/findings/{side}/", f"/api/series/{series}/findings/R/",
               {"version": 1, "gland": "seen"}),
              ("post", "/api/series/{id}/findings/{side}/restore/", f"/api/series/{series}/findings/R/restore/",
               {"version": 1, "restore": 1}),
              ("post", "/api/datasets/{id}/judge/", f"/api/datasets/{world.a.pk}/judge/", {"force": False})]
    for method, template, url, body in writes:
        assert list(schema["paths"][template][method]["requestBody"]["content"]) == ["application/json"], template
        for fmt in ("multipart", None):
            r = getattr(admin_api, method)(url, body, format=fmt) if fmt else getattr(admin_api, method)(
                url, urlencode(body, doseq=True), content_type="application/x-www-form-urlencoded")
            assert r.status_code == 415 and "Unsupported media type" in r.json()["detail"], (url, fmt, r.content)
    r = admin_api.put(f"/api/series/{series}/boxes/R/", writes[0][3], format="json")
    assert r.status_code == 200, r.content
