"""In Chromium: a lead opens a run, moves the threshold slider, and the confusion matrix and sensitivity become
the values the API gives for that operating value; a clinician cannot open the dashboards."""
from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


@contextmanager
def run_dashboard(chromium, live_server, run):
    """``(page, errors)``: the lead signed in, on ``run``'s dashboard once it has drawn; ``errors`` collects the
    page's script errors; the browser context is closed afterwards."""
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        login(page, live_server, "lead", "pw-lead")
        page.goto(f"{live_server.url}/runs/{run.pk}/dashboard/")
        page.wait_for_selector("#dashboard[data-ready='1']", timeout=20000)
        yield page, errors
    finally:
        context.close()


def test_lead_moves_the_threshold_slider(live_server, dashboard_chromium, make_evaluated_run, users, client_as):
    run, ev = make_evaluated_run(30, members=[users["lead"]])
    api = client_as("lead")
    with run_dashboard(dashboard_chromium, live_server, run) as (page, errors):
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
        # each row shows the score its verdict compared with the operating value
        for row in api.get(f"/api/evaluations/{ev.pk}/scans/").json()["scans"]:
            tr = page.locator(f"#scans tbody tr[data-series-uid='{row['series_uid']}']")
            assert tr.locator("td.score").inner_text() == f"{row['score']:.3f}"
            assert (row["score"] >= ev.operating_value) == (row["verdict"] == "abnormal")
        assert page.locator("#metrics tbody tr[data-metric='auc'] td[data-level='scan']").inner_text().count("[") == 1
        assert not errors, errors


def test_reading_aids_render_and_ppv_follows_the_prevalence(live_server, dashboard_chromium, make_evaluated_run,
                                                            users, client_as):
    """The reliability diagram and the precision-recall curve are drawn from the stored evaluation; the PPV shown
    is the API's for the prevalence typed in (default 1%) and changes when it changes, and follows the slider."""
    run, ev = make_evaluated_run(30, members=[users["lead"]])
    api = client_as("lead")
    aids = ev.result["reading_aids"]
    context = dashboard_chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    url = f"/api/evaluations/{ev.pk}/prevalence/"

    def shown(prevalence: float) -> None:
        # locator assertions, not wait_for_function: the page runs under the CSP, which forbids eval
        expect(page.locator("#prevalence-stats")).to_have_attribute("data-prevalence", f"{prevalence}")

    try:
        login(page, live_server, "lead", "pw-lead")
        page.goto(f"{live_server.url}/runs/{run.pk}/dashboard/")
        page.wait_for_selector("#dashboard[data-ready='1']", timeout=20000)
        # the charts: one dot per non-empty reliability bin, the diagonal, the PR curve with its base rate line
        rel = page.locator("#reliability-chart svg")
        assert rel.count() == 1
        assert rel.locator("circle.pt").count() == len(aids["reliability"]["calibrated"]["prob_true"])
        assert rel.locator("path[data-series^='calibrated']").count() == 1
        pr = page.locator("#pr-chart svg")
        assert pr.locator("path[data-series^='scan']").count() == 1 and pr.locator("line.hline").count() == 1
        assert pr.locator("circle.point").get_attribute("visibility") == "visible"
        assert "ECE" in page.inner_text("#reliability-caption")
        assert "average precision" in page.inner_text("#pr-caption")

        # the default prevalence with its note, and the PPV/NPV the API gives for it
        assert float(page.input_value("#prevalence")) == 1.0
        assert "1% of abdominal CTs" in page.inner_text("#prevalence-note")
        shown(0.01)
        at_1 = api.get(url, {"prevalence": 0.01, "value": ev.operating_value}).json()
        assert page.inner_text("#prev-ppv") == f"{at_1['ppv']:.3f}"
        assert page.inner_text("#prev-npv") == f"{at_1['npv']:.3f}"
        assert page.inner_text("#prev-sens") == f"{at_1['sensitivity']:.3f}"

        # typing another prevalence changes the PPV to the API's value for it
        page.fill("#prevalence", "20")
        shown(0.2)
        at_20 = api.get(url, {"prevalence": 0.2, "value": ev.operating_value}).json()
        assert at_20["ppv"] > at_1["ppv"]
        assert page.inner_text("#prev-ppv") == f"{at_20['ppv']:.3f}" != f"{at_1['ppv']:.3f}"

        # the slider's operating value is the one the PPV is computed at
        slider = page.locator("#op-slider")
        slider.focus()
        page.keyboard.press("Home")
        for _ in range(20):
            page.keyboard.press("ArrowRight")
        expect(page.locator("#prevalence-basis")).to_contain_text("0.200")
        at_slider = api.get(url, {"prevalence": 0.2, "value": 0.2}).json()
        assert page.inner_text("#prev-ppv") == ("n/a" if at_slider["ppv"] is None else f"{at_slider['ppv']:.3f}")

        # a prevalence that is not one says so, and nothing is made up
        page.fill("#prevalence", "150")
        expect(page.locator("#prevalence-error")).to_have_text(re.compile(r"\S"))
        assert "prevalence" in page.inner_text("#prevalence-error") and page.inner_text("#prev-ppv") == "n/a"
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


def test_a_run_whose_test_scans_are_one_class_says_so_instead_of_empty_charts(live_server, dashboard_chromium,
                                                                             make_evaluated_run, users):
    """Test patients all normal: no AUC, no sensitivity; the ROC says why it is not drawn (as the reliability
    diagram does), rather than an empty chart with a legend; the page has no errors."""
    from annotations.models import Dataset
    from inference.models import DatasetSplit

    patients = [f"P{i:03d}" for i in range(12)]
    test = ["P000", "P002", "P004"]  # even patients are normal
    rest = [p for p in patients if p not in test]
    ds = Dataset.objects.create(name="eval-ds")
    split = DatasetSplit.objects.create(dataset=ds, test_patients=test, folds=[rest[k::5] for k in range(5)])
    run, ev = make_evaluated_run(12, members=[users["lead"]], split=split)
    assert ev.result["scan"]["auc"] is None and ev.result["scan"]["confusion"][1] == [0, 0]
    with run_dashboard(dashboard_chromium, live_server, run) as (page, errors):
        note = page.inner_text("#roc-note")
        assert note == "no scan or image ROC: the test scans and images need both classes (normal and abnormal)", note
        assert page.locator("#roc-chart svg").count() == 0
        assert "both classes" in page.inner_text("#reliability-chart")
        assert page.inner_text("#live-sensitivity") == "n/a"
        assert not errors, errors


def test_an_interval_of_no_width_from_two_test_patients_is_marked_not_certainty(live_server, dashboard_chromium,
                                                                                make_evaluated_run, users):
    """One abnormal and one normal test patient: every bootstrap resample gives sensitivity 1 (or specificity 0),
    an interval [1.00, 1.00] a lead could read as certainty; it is marked † and the page says what it comes from."""
    from annotations.models import Dataset
    from inference.models import DatasetSplit

    patients = [f"P{i:03d}" for i in range(12)]
    test = ["P000", "P001"]  # one normal, one abnormal
    rest = [p for p in patients if p not in test]
    ds = Dataset.objects.create(name="eval-ds")
    split = DatasetSplit.objects.create(dataset=ds, test_patients=test, folds=[rest[k::5] for k in range(5)])
    run, ev = make_evaluated_run(12, members=[users["lead"]], split=split)
    points = [m for m in ("sensitivity", "specificity", "accuracy", "auc")
              if ev.result["scan"][f"{m}_ci"] and ev.result["scan"][f"{m}_ci"][0] == ev.result["scan"][f"{m}_ci"][1]]
    assert points, ev.result["scan"]
    with run_dashboard(dashboard_chromium, live_server, run) as (page, errors):
        for m in points:
            shown = page.locator(f"#metrics tbody tr[data-metric='{m}'] td[data-level='scan']").inner_text()
            assert shown.endswith("]†"), (m, shown)
        note = page.inner_text("#ci-note")
        assert note.startswith("† Every bootstrap resample gave the same value") and "not certainty" in note
        assert "resampling 1 abnormal test patient and 1 normal test patient cannot move it" in note, note


def test_a_test_score_on_the_operating_value_is_counted_alike_on_the_page(live_server, dashboard_chromium,
                                                                        make_run_from_predictions, users):
    """One image of seven voted abnormal (fraction 1/7) on the out-of-fold operating value 1/7: the slider's
    confusion matrix, its sensitivity and the PPV/NPV beside it count it as the evaluation does, a true positive
    (the page read scores stored rounded to 0.142857 and called it a false negative)."""
    from inference.ml.metrics import Bootstrap
    from inference.services.evaluation import evaluate_run

    two, none, one = [0.9, 0.9, *[0.1] * 5], [0.1] * 7, [0.9, *[0.1] * 6]
    scans = [("A1", 1, two), ("A2", 1, two), ("N1", 0, none), ("N2", 0, none), ("T1", 1, one), ("T2", 0, none)]
    run = make_run_from_predictions(scans, ["T1", "T2"], [["A1", "N1"], ["A2", "N2"]], members=[users["lead"]])
    ev = evaluate_run(run, boot=Bootstrap(n=20))
    assert ev.result["scan"]["confusion"] == [[1, 0], [0, 1]]
    with run_dashboard(dashboard_chromium, live_server, run) as (page, errors):
        assert [page.inner_text(f"#cm-{k}") for k in ("tn", "fp", "fn", "tp")] == ["1", "0", "0", "1"]
        assert page.inner_text("#live-sensitivity") == "1.000" and page.inner_text("#prev-sens") == "1.000"


def test_every_chart_legend_lies_above_its_plot_and_inside_the_chart(live_server, dashboard_chromium,
                                                                     make_evaluated_run, users):
    """Legends were drawn in the plot's top-right corner, over the ROC curve's end, the threshold curves at 1
    and the learning curves, and a long label ("calibrated (temperature)") ran past the chart's edge, cut off.
    Each legend entry now lies in a band above the plot area (at the y axis' top or higher) and inside its SVG,
    at the sizes the README names."""
    run, ev = make_evaluated_run(30, members=[users["lead"]])
    for width, height, scale in ((1280, 800, 1), (1920, 1080, 1), (1280, 800, 2)):
        context = dashboard_chromium.new_context(viewport={"width": width, "height": height},
                                                 device_scale_factor=scale)
        page = context.new_page()
        try:
            login(page, live_server, "lead", "pw-lead")
            page.goto(f"{live_server.url}/runs/{run.pk}/dashboard/")
            page.wait_for_selector("#dashboard[data-ready='1']", timeout=20000)
            charts = page.locator("svg.chart")
            assert charts.count() >= 4
            legends = 0
            for i in range(charts.count()):
                chart = charts.nth(i)
                box = chart.bounding_box()
                plot_top = chart.locator("g line").nth(1).bounding_box()["y"]  # the y axis, from the plot's top
                texts = chart.locator("g:not([stroke]) text")  # the legend's (the axes' group has a stroke)
                for j in range(texts.count()):
                    t = texts.nth(j).bounding_box()
                    assert t["y"] + t["height"] <= plot_top + 0.5, (i, texts.nth(j).text_content())
                    assert box["x"] <= t["x"] and t["x"] + t["width"] <= box["x"] + box["width"] + 0.5, \
                        (i, texts.nth(j).text_content())
                    legends += 1
            assert legends >= 4
        finally:
            context.close()


def test_an_interval_is_written_to_its_values_decimals_so_the_value_lies_inside_it(live_server, dashboard_chromium,
                                                                                  make_evaluated_run, users,
                                                                                  client_as):
    """An image AUC of 0.4347 whose bootstrap upper bound is itself was shown "0.435 [0.34, 0.43]": the value
    outside its own interval. Bounds are written to the value's three decimals, on the run page and the compare
    page alike."""
    import re

    run, ev = make_evaluated_run(30, members=[users["lead"]])
    result = dict(ev.result)
    result["image"] = dict(result["image"], auc=0.43472222222222223, auc_ci=[0.34375, 0.43472222222222223])
    ev.result = result
    ev.save(update_fields=["result"])
    with run_dashboard(dashboard_chromium, live_server, run) as (page, errors):
        assert page.inner_text("#metrics tbody tr[data-metric='auc'] td[data-level='image']") == "0.435 [0.344, 0.435]"
        for level in ("image", "scan", "patient"):
            for metric in ("auc", "accuracy", "sensitivity", "specificity"):
                text = page.inner_text(f"#metrics tbody tr[data-metric='{metric}'] td[data-level='{level}']")
                m = re.fullmatch(r"(\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\]†?", text)
                assert m, (level, metric, text)
                lo, value, hi = float(m[2]), float(m[1]), float(m[3])
                stored, (slo, shi) = result[level][metric], result[level][f"{metric}_ci"]
                assert (lo <= value <= hi) == (slo <= stored <= shi), (level, metric, text)
        assert not errors, errors
    compare = client_as("lead").get("/runs/compare/").content.decode()
    assert re.search(r'<span class="muted ci">\[\d\.\d{3}, \d\.\d{3}\]', compare)
    assert not re.search(r'<span class="muted ci">\[\d\.\d{2}, ', compare)


def test_an_interval_is_never_broken_across_lines(live_server, dashboard_chromium, make_evaluated_run, users):
    """With bounds to three decimals the compare page's narrow columns broke intervals inside the brackets
    ("[0.500," on one line, "0.500]†" on the next) at 1280x800. Each interval stays on one line there and on the
    run page."""
    run, ev = make_evaluated_run(30, members=[users["lead"]])
    run.name = "baseline after relabelling <i>P007</i> and the new kernel"  # a name as leads write them
    run.save(update_fields=["name"])
    context = dashboard_chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        login(page, live_server, "lead", "pw-lead")
        for url in ("/runs/compare/", f"/runs/{run.pk}/dashboard/"):
            page.goto(f"{live_server.url}{url}")
            if "dashboard" in url:
                page.wait_for_selector("#dashboard[data-ready='1']", timeout=20000)
            spans = page.locator("span.ci")
            assert spans.count() >= 4
            for i in range(spans.count()):
                if not spans.nth(i).inner_text().strip():
                    continue
                rects = spans.nth(i).evaluate("s => s.getClientRects().length")
                assert rects == 1, (url, spans.nth(i).inner_text())
    finally:
        context.close()
