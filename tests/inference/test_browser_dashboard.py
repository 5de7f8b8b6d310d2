"""In Chromium: a lead opens a run, moves the threshold slider, and the confusion matrix and sensitivity become
the values the API gives for that operating value; a clinician cannot open the dashboards."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser]


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


def test_lead_moves_the_threshold_slider(live_server, dashboard_chromium, make_evaluated_run, users, client_as):
    run, ev = make_evaluated_run(30, members=[users["lead"]])
    api = client_as("lead")
    context = dashboard_chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        login(page, live_server, "lead", "pw-lead")
        page.goto(f"{live_server.url}/runs/{run.pk}/dashboard/")
        page.wait_for_selector("#dashboard[data-ready='1']", timeout=20000)
        chosen = ev.result["scan"]["confusion"]
        assert page.inner_text("#cm-tp") == str(chosen[1][1]) and page.inner_text("#cm-fn") == str(chosen[1][0])

        slider = page.locator("#op-slider")
        seen = set()
        for steps in (10, 35, 60, 85):
            slider.focus()
            page.keyboard.press("Home")
            for _ in range(steps):
                page.keyboard.press("ArrowRight")
            value = steps / 100
            assert float(page.inner_text("#op-value")) == pytest.approx(value)
            expected = api.get(f"/api/evaluations/{ev.pk}/threshold/", {"value": value}).json()
            (tn, fp), (fn, tp) = expected["confusion"]
            got = [int(page.inner_text(f"#cm-{k}")) for k in ("tn", "fp", "fn", "tp")]
            assert got == [tn, fp, fn, tp], (value, got, expected)
            sens = expected["sensitivity"]
            assert page.inner_text("#live-sensitivity") == ("n/a" if sens is None else f"{sens:.3f}")
            seen.add((tn, fp, fn, tp))
        assert len(seen) > 1, "moving the slider should change the confusion matrix"
        # the per-scan table: false negatives first, rows open the viewer at a flagged slice
        first = page.locator("#scans tbody tr").first
        assert first.get_attribute("data-href").startswith("/series/")
        assert page.locator("#scans tbody tr").count() == 10
        assert page.locator("#metrics tbody tr[data-metric='auc'] td[data-level='scan']").inner_text().count("[") == 1
        assert not errors, errors
    finally:
        context.close()


def test_clinician_cannot_open_the_dashboards(live_server, dashboard_chromium, make_evaluated_run, users):
    run, ev = make_evaluated_run(9, members=[users["clinician"]])
    context = dashboard_chromium.new_context()
    page = context.new_page()
    try:
        login(page, live_server, "clin", "pw-clin")
        for url in (f"/runs/{run.pk}/dashboard/", "/runs/compare/", f"/api/evaluations/{ev.pk}/"):
            response = page.goto(f"{live_server.url}{url}")
            assert response.status == 403, url
        assert page.locator("#op-slider").count() == 0
    finally:
        context.close()
