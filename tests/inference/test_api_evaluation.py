"""Dashboard API and pages: evaluations, per-scan verdicts, the threshold, exports, roles and visibility."""
from __future__ import annotations

import csv
import io
import re

import pytest


@pytest.fixture
def lead_run(make_evaluated_run, users):
    return make_evaluated_run(30, members=[users["lead"], users["clinician"]])


def test_evaluation_detail_and_threshold(client_as, lead_run):
    run, ev = lead_run
    c = client_as("lead")
    doc = c.get(f"/api/evaluations/{ev.pk}/").json()
    assert doc["operating_value"] == ev.operating_value and doc["scan"]["confusion"] == ev.result["scan"]["confusion"]
    at = c.get(f"/api/evaluations/{ev.pk}/threshold/", {"value": ev.operating_value}).json()
    assert at["confusion"] == doc["scan"]["confusion"] and at["sensitivity"] == doc["scan"]["sensitivity"]
    assert c.get(f"/api/evaluations/{ev.pk}/threshold/", {"value": "abc"}).status_code == 400
    assert c.get(f"/api/evaluations/{ev.pk}/threshold/", {"value": 0.5, "aggregator": "median"}).status_code == 400
    curves = c.get(f"/api/evaluations/{ev.pk}/curves/", {"level": "scan", "aggregator": "max"}).json()
    assert len(curves["threshold_curve"]) == 101 and curves["roc"]["fpr"][0] == 0.0
    listing = c.get(f"/api/runs/{run.pk}/evaluations/").json()
    assert listing[0]["id"] == ev.pk and listing[0]["scan"]["auc_ci"]
    groups = c.get("/api/runs/compare/").json()
    assert groups[0]["runs"][0]["evaluation"]["id"] == ev.pk


def test_threshold_and_curves_default_to_the_runs_rule(client_as, lead_run):
    """Without ``aggregator`` the threshold and curves answers read the run's own scan rule (``sides`` for a
    per-gland run) at its operating value, as the dashboard and the prevalence answer do; before, they read the
    image-vote fraction, at the run's rule's operating value when no value was given."""
    from inference.services.evaluation import metrics_at

    _, ev = lead_run
    result = dict(ev.result)
    result["aggregator"] = "max"  # a run whose rule is not the image vote
    value = result["aggregators"]["max"]["operating_value"]
    result["operating_value"] = value
    ev.result, ev.operating_value = result, value
    ev.save(update_fields=["result", "operating_value"])
    c = client_as("lead")
    at = c.get(f"/api/evaluations/{ev.pk}/threshold/").json()
    assert at["aggregator"] == "max" and at["operating_value"] == value
    assert at["confusion"] == metrics_at(ev, value, "scan", "max")["confusion"]
    assert c.get(f"/api/evaluations/{ev.pk}/threshold/", {"value": 0.3}).json()["aggregator"] == "max"
    fraction = c.get(f"/api/evaluations/{ev.pk}/threshold/", {"aggregator": "fraction"}).json()
    assert fraction["aggregator"] == "fraction"
    assert fraction["operating_value"] == result["aggregators"]["fraction"]["operating_value"]
    curves = c.get(f"/api/evaluations/{ev.pk}/curves/").json()
    assert curves["aggregator"] == "max" and curves["operating_value"] == value
    assert c.get(f"/api/evaluations/{ev.pk}/prevalence/").json()["aggregator"] == "max"


def test_reading_aids_and_prevalence(client_as, lead_run, users):
    from inference.ml import metrics as M

    _, ev = lead_run
    c = client_as("lead")
    doc = c.get(f"/api/evaluations/{ev.pk}/").json()
    assert doc["reading_aids"]["reliability"]["calibrated"]["prob_true"] and doc["reading_aids"]["pr"]["precision"]
    # an evaluation stored before the reading aids existed is served them too
    old = dict(ev.result)
    old.pop("reading_aids")
    type(ev).objects.filter(pk=ev.pk).update(result=old)
    assert c.get(f"/api/evaluations/{ev.pk}/").json()["reading_aids"] == doc["reading_aids"]

    url = f"/api/evaluations/{ev.pk}/prevalence/"
    default = c.get(url).json()
    scan = doc["scan"]
    assert default["prevalence"] == 0.01 and default["operating_value"] == doc["operating_value"]
    assert default["ppv"] == pytest.approx(M.predictive_values(scan["sensitivity"], scan["specificity"], 0.01)["ppv"])
    assert default["test_ppv"] == scan["ppv"]
    higher = c.get(url, {"prevalence": 0.3}).json()
    assert higher["ppv"] > default["ppv"] and higher["npv"] <= default["npv"]  # NPV stays 1 at sensitivity 1
    at = c.get(url, {"prevalence": 0.05, "value": 0.3, "aggregator": "max"}).json()
    assert at["operating_value"] == 0.3 and at["aggregator"] == "max"
    for params, field in (({"prevalence": "abc"}, "prevalence"), ({"prevalence": 0}, "prevalence"),
                          ({"prevalence": 1.2}, "prevalence"), ({"value": "x"}, "value"),
                          ({"aggregator": "median"}, "aggregator")):
        r = c.get(url, params)
        # a field's errors are a list, as DRF's serializers answer them ({"value": ["..."]})
        assert r.status_code == 400 and isinstance(r.json().get(field), list), (params, r.json())
    assert client_as("clinician").get(url).status_code == 403


def test_scans_sorted_and_filtered(client_as, lead_run):
    _, ev = lead_run
    c = client_as("lead")
    data = c.get(f"/api/evaluations/{ev.pk}/scans/").json()
    outcomes = [s["outcome"] for s in data["scans"]]
    order = {"fn": 0, "fp": 1, "tp": 2, "tn": 3}
    assert outcomes == sorted(outcomes, key=order.get)  # false negatives first
    assert all(s["viewer_url"].startswith(f"/series/{s['series_id']}/") for s in data["scans"])
    flagged = [s for s in data["scans"] if s["flagged_slices_mm"]]
    assert flagged and "?z_mm=" in flagged[0]["viewer_url"]
    fns = c.get(f"/api/evaluations/{ev.pk}/scans/", {"outcome": "fn"}).json()["scans"]
    assert all(s["outcome"] == "fn" for s in fns)
    assert len(fns) == ev.result["scan"]["confusion"][1][0]
    probs = [s["probability"] for s in c.get(f"/api/evaluations/{ev.pk}/scans/", {"sort": "-probability"}).json()["scans"]]
    assert probs == sorted(probs, reverse=True)
    assert c.get(f"/api/evaluations/{ev.pk}/scans/", {"sort": "nonsense"}).status_code == 400


def test_pages_and_exports(client_as, lead_run):
    run, ev = lead_run
    c = client_as("lead")
    page = c.get(f"/runs/{run.pk}/dashboard/").content.decode()
    assert f'data-evaluation="{ev.pk}"' in page and 'id="op-slider"' in page
    assert f"/runs/{run.pk}/dashboard/" in c.get("/runs/compare/").content.decode()
    rows = list(csv.reader(io.StringIO(c.get(f"/runs/{run.pk}/evaluation.csv").content.decode())))
    assert ["level", "metric", "value", "ci_low", "ci_high"] in rows
    assert any(r[:2] == ["scan", "sensitivity"] for r in rows)
    assert len([r for r in rows if r and r[0].startswith("1.2.826")]) == 10
    doc = c.get(f"/runs/{run.pk}/evaluation.json").json()
    assert doc["evaluation"] == ev.pk and doc["scans"]


def test_roles_and_visibility(client_as, make_evaluated_run, users, lead_run):
    run, ev = lead_run
    clin = client_as("clinician")
    assert clin.get(f"/runs/{run.pk}/dashboard/").status_code == 403
    assert clin.get(f"/api/evaluations/{ev.pk}/").status_code == 403
    # a lead who is not a member of the dataset sees nothing of it
    other_run, other_ev = make_evaluated_run(9, name="other-ds", evaluate=True)
    lead = client_as("lead")
    assert lead.get(f"/api/evaluations/{other_ev.pk}/").status_code == 404
    assert lead.get(f"/runs/{other_run.pk}/dashboard/").status_code == 404
    assert all(g["dataset"] != "other-ds" for g in lead.get("/api/runs/compare/").json())
    assert client_as("admin").get(f"/api/evaluations/{other_ev.pk}/").status_code == 200


def test_start_evaluation_from_api(client_as, make_evaluated_run, users, django_capture_on_commit_callbacks):
    from adrenal_site.jobs.models import Job

    run, _ = make_evaluated_run(12, evaluate=False, members=[users["lead"]])
    c = client_as("lead")
    bad = c.post(f"/api/runs/{run.pk}/evaluations/", {"objective": "f1"}, content_type="application/json")
    assert bad.status_code == 400 and "unknown objective" in bad.json()["objective"][0]
    with django_capture_on_commit_callbacks(execute=False):
        r = c.post(f"/api/runs/{run.pk}/evaluations/", {"objective": "youden"}, content_type="application/json")
    assert r.status_code == 202
    job = Job.objects.get(pk=r.json()["job"])
    assert job.kind == "evaluate" and job.params == {"run_id": run.pk, "objective": "youden"} and job.queue == "cpu"


def test_sensitivity_by_lesion_size_from_the_markers(client_as, lead_run):
    """The dashboard and the JSON export show sensitivity per lesion-size stratum over the markers clinicians set
    on the abnormal test scans (read when the page is, so a marker set after the evaluation counts); a per-gland
    run credits a lesion only to its own gland's score."""
    from annotations.models import SideFinding
    from inference.services.lesion_sizes import lesion_size_sensitivity

    run, ev = lead_run
    c = client_as("lead")
    abnormal = [s for s in ev.result["scans"] if s["label"] == "abnormal"]
    assert len(abnormal) >= 4
    page = c.get(f"/runs/{run.pk}/dashboard/").content.decode()
    assert 'id="by-size-none"' in page and f"({len(abnormal)} scans)" in page
    diameters = [8.0, 15.0, 32.0, 55.0]
    for scan, d in zip(abnormal, diameters):
        SideFinding.objects.create(series_id=scan["series_id"], side="R", lesion_centre_lps=[0.0, 0.0, 0.0],
                                   lesion_diameter_mm=d)
    by_size = lesion_size_sensitivity(ev)
    assert by_size["unit"] == "scan" and by_size["marked"] == 4
    assert by_size["unmarked"]["total"] == len(abnormal) - 4
    assert [s["label"] for s in by_size["strata"]] == ["< 10 mm", "10–20 mm", "20–40 mm", "≥ 40 mm"]
    for stratum, scan in zip(by_size["strata"], abnormal):
        found = scan["verdict"] == "abnormal"
        assert (stratum["detected"], stratum["total"]) == (int(found), 1)
        assert stratum["ci"][0] <= stratum["sensitivity"] <= stratum["ci"][1]
    page = c.get(f"/runs/{run.pk}/dashboard/").content.decode()
    assert 'id="by-size-table"' in page and 'data-stratum="10–20 mm"' in page and "4 marked lesions" in page
    doc = c.get(f"/runs/{run.pk}/evaluation.json").json()
    assert doc["sensitivity_by_lesion_size"]["strata"] == by_size["strata"]

    # a per-gland run: the R lesion of a scan called abnormal for its L gland's score is a miss
    value = ev.operating_value
    abnormal[0].update(verdict="abnormal", sides={"R": value - 0.1, "L": value + 0.1})
    abnormal[1].update(verdict="abnormal", sides={"R": value + 0.05, "L": value - 0.2})
    ev.result["aggregator"] = "sides"
    SideFinding.objects.create(series_id=abnormal[0]["series_id"], side="L", lesion_centre_lps=[1.0, 0.0, 0.0],
                               lesion_diameter_mm=12.0)
    by_side = lesion_size_sensitivity(ev)
    assert by_side["unit"] == "side" and by_side["marked"] == 5
    small, medium = by_side["strata"][0], by_side["strata"][1]
    assert (small["detected"], small["total"]) == (0, 1)  # R, 8 mm: its own gland's score is below the value
    assert (medium["detected"], medium["total"]) == (2, 2)  # L 12 mm and R 15 mm: each found by its own gland


def test_labels_changed_after_the_evaluation_are_named_on_the_dashboard(client_as, lead_run):
    """A clinician corrects a test patient's label after the run: the dashboard and the JSON export name the scan
    and say the figures still use the old labels; nothing is said while the labels are the run's."""
    from annotations.models import Label, Patient

    run, ev = lead_run
    c = client_as("lead")
    assert 'id="label-changes"' not in c.get(f"/runs/{run.pk}/dashboard/").content.decode()
    assert c.get(f"/runs/{run.pk}/evaluation.json").json()["label_changes"] == []
    scan = next(s for s in ev.result["scans"] if s["label"] == "normal")
    Label.assign(Patient.objects.get(dataset=run.dataset, pseudo_id=scan["patient"]), "abnormal", "ui")
    page = c.get(f"/runs/{run.pk}/dashboard/").content.decode()
    assert 'id="label-changes"' in page and f"{scan['patient']}: normal → abnormal" in page
    assert "start a new run" in page
    assert c.get(f"/runs/{run.pk}/evaluation.json").json()["label_changes"] == [
        {"series_id": scan["series_id"], "patient": scan["patient"], "was": "normal", "now": "abnormal"}]
    # a test patient deleted from the store since reads 'deleted', not 'unlabelled' (its label was not removed)
    gone = next(s for s in ev.result["scans"] if s["patient"] != scan["patient"])
    Patient.objects.filter(dataset=run.dataset, pseudo_id=gone["patient"]).delete()
    changes = c.get(f"/runs/{run.pk}/evaluation.json").json()["label_changes"]
    assert {"series_id": gone["series_id"], "patient": gone["patient"], "was": gone["label"], "now": "deleted"} in changes
    assert f"{gone['patient']}: {gone['label']} → deleted" in c.get(f"/runs/{run.pk}/dashboard/").content.decode()


def test_csv_export_opens_in_a_spreadsheet_as_written(client_as, lead_run):
    """Flagged slices below z = 0 ("-40.0 -35.0") would open in a spreadsheet as the formula -40 - 35 = -75: text
    starting like a formula is written with a leading apostrophe; a lone number stays a number."""
    run, ev = lead_run
    result = dict(ev.result)
    scans = [dict(s) for s in result["scans"]]
    scans[0]["flagged_slices_mm"] = [-40.0, -35.0]
    scans[1]["flagged_slices_mm"] = [-40.0]
    scans[2]["patient"] = "=1+1"
    result["scans"] = scans
    ev.result = result
    ev.save(update_fields=["result"])
    rows = list(csv.reader(io.StringIO(client_as("lead").get(f"/runs/{run.pk}/evaluation.csv").content.decode())))
    by_uid = {r[0]: r for r in rows if r and r[0].startswith("1.2.826")}
    assert by_uid[scans[0]["series_uid"]][-1] == "'-40.0 -35.0"
    assert by_uid[scans[1]["series_uid"]][-1] == "-40.0"
    assert by_uid[scans[2]["series_uid"]][2] == "'=1+1"


def test_csv_and_page_give_the_score_each_verdict_compared(client_as, lead_run):
    """The CSV's scan rows carry the score the verdict compared with the operating value (and per-side scores):
    a per-gland run's scan read 'probability 0.05, abnormal' at operating value 0.33 with no column saying why."""
    run, ev = lead_run
    result = dict(ev.result)
    scans = [dict(s) for s in result["scans"]]
    scans[0]["sides"] = {"R": 0.0115, "L": 0.5553}
    result["scans"] = scans
    ev.result = result
    ev.save(update_fields=["result"])
    c = client_as("lead")
    rows = list(csv.reader(io.StringIO(c.get(f"/runs/{run.pk}/evaluation.csv").content.decode())))
    assert rows[0][-2:] == ["aggregator", ev.result["aggregator"]]
    header = next(r for r in rows if r and r[0] == "series_uid")
    table = [dict(zip(header, r)) for r in rows[rows.index(header) + 1:]]
    assert len(table) == len(scans)
    by_uid = {s["series_uid"]: s for s in scans}
    for row in table:
        s = by_uid[row["series_uid"]]
        assert float(row["score"]) == s["score"]
        assert row["verdict"] == ("abnormal" if float(row["score"]) >= ev.operating_value else "normal")
    first = next(r for r in table if r["series_uid"] == scans[0]["series_uid"])
    assert (first["score_R"], first["score_L"]) == ("0.0115", "0.5553")
    listed = c.get(f"/api/evaluations/{ev.pk}/scans/", {"sort": "-score"}).json()["scans"]
    assert [s["score"] for s in listed] == sorted((s["score"] for s in scans), reverse=True)
    page = c.get(f"/runs/{run.pk}/dashboard/").content.decode()
    assert 'data-sort="score"' in page
    # the mean image probability is named as such: a verdict's 'probability' is the calibrated scan probability
    assert '>Mean image p</th>' in page and ">Probability</th>" not in page


def test_compare_page_names_each_runs_rule_and_marks_intervals_of_no_width(client_as, lead_run):
    """The compare page said every run used 'fraction of images voted abnormal' (a per-gland run uses 'sides');
    it names each run's rule, and an interval every resample agreed on is marked † with its note."""
    run, ev = lead_run
    result = dict(ev.result)
    result["scan"] = dict(result["scan"], sensitivity=1.0, sensitivity_ci=[1.0, 1.0])
    ev.result = result
    ev.save(update_fields=["result"])
    page = client_as("lead").get("/runs/compare/").content.decode()
    row = page.split(f'data-run="{run.pk}"')[1].split("</tr>")[0]
    assert f"<td>{ev.aggregator}</td>" in row
    assert re.search(r'data-metric="sensitivity">1\.000 <span class="muted ci">\[1\.000, 1\.000\]†', row), row
    assert "original rule (fraction" not in page and 'id="ci-note"' in page
