"""In Chromium: markup stored in every name, description and DICOM text field the pages show runs no script
and is shown as text, on every page that shows it, with the Content-Security-Policy off (so the escaping alone is
tested) and on (no page of ours breaks the policy); the API docs render from our own static files."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

pytestmark = [pytest.mark.browser]

XSS = "X</script><script>window.__xss=1</script><img src=x onerror=window.__xss=1>"
SHORT = "<img src=x onerror=window.__xss=1>"  # for fields of 64 characters or fewer


def hostile_world(ct_series, users, django_user_model, media_root: Path) -> dict:
    """Rows whose every shown text field is markup: dataset, patients, study and series DICOM text, run, job,
    import report, label note, box author (a user name), DICOM node delivery and an evaluation's scans."""
    from adrenal_site.jobs.models import Job
    from annotations.models import ImportItem, ImportReport, Label
    from annotations.services.boxes import save_box
    from inference.models import Prediction, ReceivedStudy
    from inference.services.evaluation import evaluate_run
    from inference.ml.metrics import Bootstrap
    from tests.factories import make_dataset, make_run, make_series, make_split
    from tests.plugins.dashboard import write_run_artifacts

    evil = django_user_model.objects.create_user(username=f"u{XSS}", password="pw-evil")  # past the form's rules
    ds = make_dataset(f"D{XSS}", members=[users["clinician"], users["lead"]], description=f"about {XSS}")
    series = ct_series(dataset=ds, patient=f"P{SHORT}", description=f"S{XSS}")
    series.series_uid = f"1.2.826.0.7.{SHORT}"
    series.manufacturer, series.convolution_kernel = f"M{SHORT}", f"K{SHORT}"
    series.save()
    series.study.description, series.study.study_uid = f"T{XSS}", f"1.2.826.0.8.{SHORT}"
    series.study.save()
    vol = series.volume
    k, j, i = vol.shape
    centre = (np.array(vol.affine) @ [i / 2, j / 2, k / 2, 1])[:3]
    save_box(series, "R", list(centre - 15), list(centre + 15), user=evil)
    patient = series.study.patient
    Label.assign(patient, "abnormal", Label.Source.UI, user=evil, note=f"N{XSS}")

    # an evaluated run on patients and series whose ids are markup
    pids = [f"P{i}{SHORT}" for i in range(12)]
    by_patient, labels = {}, {}
    for i, pid in enumerate(pids):
        by_patient[pid] = [make_series(ds, pid, study_uid=f"1.2.9.{i}", series_uid=f"1.2.826.0.1.{i}{SHORT}",
                                       series_description=f"S{XSS}")]
        labels[pid] = i % 2
    test, rest = pids[:4], pids[4:]
    split = make_split(ds, test, [rest[k::4] for k in range(4)])
    run = make_run(ds, split, name=f"R{XSS}", config={"preset": "tiny", "seed": 0})
    write_run_artifacts(run, by_patient, labels, split.test_patients, split.folds, media_root, seed=0)
    evaluation = evaluate_run(run, "accuracy", boot=Bootstrap(n=50, seed=0))
    Prediction.objects.create(series=series, run=run, verdict="not_assessable", reason=f"why {XSS}")

    job = Job.objects.create(kind="import", task_name="annotations.tasks.import_studies", status=Job.Status.FAILED,
                             message=f"m{XSS}", error=f"e{XSS}", created_by=evil, finished_at=timezone.now())
    report = ImportReport.objects.create(dataset=ds, job=job, source=f"src{XSS}.zip")
    ImportItem.objects.create(report=report, path=f"p{XSS}/a.dcm", status="failed", reason=f"r{XSS}")
    ReceivedStudy.objects.create(study_uid=f"9.{SHORT}", calling_aet="PACS", notes=f"n{XSS}", dataset=ds)
    return {"ds": ds, "series": series, "patient": patient, "run": run, "evaluation": evaluation, "job": job,
            "report": report}


def pages_of(w: dict) -> dict[str, list[tuple[str, str]]]:
    """role -> [(url, selector that shows the page is ready)]."""
    ds, run = w["ds"], w["run"]
    return {
        "adm": [("/", "#jobs"), ("/store/", "main"), (f"/store/datasets/{ds.pk}/", "main"),
                (f"/store/imports/{w['report'].pk}/", "main"), (f"/store/patients/{w['patient'].pk}/labels/", "main"),
                (f"/store/datasets/{ds.pk}/edit/", "form"), (f"/jobs/{w['job'].pk}/", "#job-card")],
        "clin": [(f"/datasets/{ds.pk}/", "#worklist"),
                 (f"/series/{w['series'].pk}/", "#ov-tr div")],
        "lead": [("/runs/", "main"), (f"/runs/{run.pk}/", "#folds tbody tr"),
                 (f"/runs/{run.pk}/dashboard/", "#dashboard[data-ready='1']"), ("/runs/compare/", "main")],
    }


def visit_all(browser, live_server, world, *, login) -> list[str]:
    """Open every page as its role; returns the console's CSP complaints. Asserts no script ran on any."""
    complaints: list[str] = []
    for username, pages in pages_of(world).items():
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: complaints.append(f"{page.url}: {m.text}")
                if "Content Security Policy" in m.text else None)
        try:
            login(page, username)
            for url, ready in pages:
                page.goto(f"{live_server.url}{url}")
                page.wait_for_selector(ready)
                page.wait_for_load_state("networkidle")
                assert page.evaluate("window.__xss") is None, f"script ran on {url}"
                assert page.locator("img[src='x']").count() == 0, f"markup became an element on {url}"
                body = page.inner_text("body")
                assert "window.__xss=1" in body, f"{url}: the markup is not shown as text"
            assert not errors, errors
        finally:
            context.close()
    return complaints


def test_markup_in_every_shown_field_is_text_without_csp(live_server, browser_chromium, browser_login, ct_series,
                                                         users, django_user_model, settings):
    settings.ADRENAL_CSP = None  # the escaping alone: a page that let markup through would run it
    world = hostile_world(ct_series, users, django_user_model, Path(settings.MEDIA_ROOT))
    visit_all(browser_chromium, live_server, world, login=browser_login)


def test_pages_work_under_the_csp_and_show_compact_uids(live_server, browser_chromium, browser_login, ct_series,
                                                        users, django_user_model, settings):
    world = hostile_world(ct_series, users, django_user_model, Path(settings.MEDIA_ROOT))
    complaints = visit_all(browser_chromium, live_server, world, login=browser_login)
    assert not complaints, complaints
    # the dashboard's Series UIDs: short, whole in the title; flagged slices as runs
    context = browser_chromium.new_context()
    page = context.new_page()
    try:
        browser_login(page, "lead")
        page.goto(f"{live_server.url}/runs/{world['run'].pk}/dashboard/")
        page.wait_for_selector("#dashboard[data-ready='1']")
        uid = page.locator("#scans tbody tr code").first
        full = uid.get_attribute("title")
        assert full.startswith("1.2.826.0.1.") and full.endswith(SHORT)
        assert uid.inner_text() == f"{full[:8]}…{full[-6:]}"
        flagged = page.locator("#scans tbody td.flagged").first
        text, title = flagged.inner_text(), flagged.get_attribute("title")
        values = [float(v) for v in title.split(", ")] if title else []
        if values:
            assert re.fullmatch(rf"{len(values)} slices?: [−\d.,… to]+", text), text
        # the rule itself, on known lists (the module the page uses)
        shown = page.evaluate("""async () => { const m = await import('/static/frontend/js/compact.js');
            return [m.compactSlices([40, 41, 42, 43, 44, 45, 46, 47, 52, 60, 61, 70, 80]),
                    m.compactSlices([-120, -117, -114, -105]), m.compactSlices([12.5]),
                    m.shortUid('1.2.826.0.1.3680043.8.498.12345678901234'), m.shortUid('1.2.3.4')]; }""")
        assert shown == ["13 slices: 40 to 47, 52, 60 to 61…", "4 slices: −120 to −114, −105", "1 slice: 12.5",
                         "1.2.826.…901234", "1.2.3.4"]
    finally:
        context.close()


def test_api_docs_render_from_our_static_files(live_server, browser_chromium, browser_login, users):
    context = browser_chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    outside: list[str] = []
    complaints: list[str] = []
    page.route(re.compile(r"^(?!" + re.escape(live_server.url) + ").*"),
               lambda route: (outside.append(route.request.url), route.abort()))
    page.on("console", lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        browser_login(page, "clin")
        page.goto(f"{live_server.url}/api/docs/")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/api/predictions/" in p for p in paths) and len(paths) > 20
        scripts = page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
        assert scripts and all(s.startswith(f"{live_server.url}/") for s in scripts), scripts
        assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in s for s in scripts)
        page.goto(f"{live_server.url}/api/docs/redoc/")
        page.wait_for_selector("[role=menuitem], .menu-content", timeout=30_000)
        assert "predictions" in page.inner_text("body").lower()
        assert not outside, outside
        # Redoc's "API docs by Redocly" footer asks for its logo from Redocly's CDN: the policy blocks it, which
        # is the point (nothing leaves the app); anything else blocked would be our page breaking the policy
        assert all("cdn.redoc.ly/redoc/logo-mini.svg" in c for c in complaints), complaints
    finally:
        context.close()
