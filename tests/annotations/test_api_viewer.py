"""The viewer's API: the volume whole and in slabs (prepared at import), boxes with versions (409 on stale
edits), box input checked (400 naming the field, never a 500), confirm, undo/redo through the whole history,
restore, per-side findings with versions and their export, worklist rows with filters and counts, next
unconfirmed scan, and who may see what."""
from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

from inference.ml.geometry import Box, box_to_voxels
from inference.ml.volume import load_nifti


def put(client, series, side, lo, hi, version, **extra):
    return client.put(f"/api/series/{series.pk}/boxes/{side}/", json.dumps(
        {"lps_min": lo, "lps_max": hi, "version": version, **extra}), content_type="application/json")


def post(client, url, version):
    return client.post(url, json.dumps({"version": version}), content_type="application/json")


def make_prediction(series, verdict="abnormal", probability=0.8):
    from inference.models import DatasetSplit, Prediction, TrainingRun

    ds = series.dataset
    split, _ = DatasetSplit.objects.get_or_create(dataset=ds, defaults={"test_patients": [], "folds": []})
    run = TrainingRun.objects.create(dataset=ds, split=split, preset="tiny", config={}, artifacts_dir="")
    return Prediction.objects.create(series=series, run=run, probability=probability, verdict=verdict,
                                     flagged_slices_mm=[250.3], slice_scores=[[247.3, 0.2], [250.3, 0.9]])


def test_volume_data_is_the_volume_as_gzip_int16(ct_series, users, client, realct):
    series = ct_series(members=[users["clinician"]])
    client.force_login(users["clinician"])
    header = client.get(f"/api/series/{series.pk}/volume/").json()
    assert header["shape"] == [112, 101, 122] and header["dtype"] == "int16"
    np.testing.assert_allclose(header["affine"], series.volume.affine)
    resp = client.get(header["data_url"])
    assert resp.status_code == 200 and resp["Content-Encoding"] == "gzip"
    raw = gzip.decompress(b"".join(resp.streaming_content))
    arr = np.frombuffer(raw, "<i2").reshape(header["shape"])
    np.testing.assert_array_equal(arr, load_nifti(realct["example_ct"]).array)
    from annotations.services.volume_cache import volume_cache_path

    cached = volume_cache_path(series.volume)
    mtime = cached.stat().st_mtime_ns
    client.get(header["data_url"])
    assert cached.stat().st_mtime_ns == mtime  # served from the cache, not rebuilt


def test_box_versions_conflicts_confirm_undo_history(ct_series, users, client):
    series = ct_series(members=[users["clinician"]])
    client.force_login(users["clinician"])
    lo, hi = [-60.0, -200.0, 150.0], [-10.0, -150.0, 200.0]
    resp = put(client, series, "R", lo, hi, 0)
    assert resp.status_code == 200, resp.content
    box = resp.json()
    assert box["version"] == 1 and box["status"] == "proposed" and box["updated_by"] == "clin"
    exp = box_to_voxels(np.asarray(series.volume.affine), series.volume.shape, Box(tuple(lo), tuple(hi)))
    assert [box["voxel_min"], box["voxel_max"]] == [exp[0], exp[1]]
    # a stale version (another editor started from 0) is refused with the current box
    resp = put(client, series, "R", [-50, -190, 160], [-20, -160, 190], 0)
    assert resp.status_code == 409 and resp.json()["current"]["version"] == 1
    assert resp.json()["current"]["lps_min"] == lo
    # ... and says who, in words: the same reader in another tab is not "someone else"
    assert resp.json()["detail"] == "You changed this in another tab or window (now version 1)."
    client.force_login(users["lead"])
    series.dataset.members.add(users["lead"])
    resp = put(client, series, "R", [-50, -190, 160], [-20, -160, 190], 0)
    assert resp.json()["detail"] == "This was changed by clin (now version 1)."
    client.force_login(users["clinician"])
    # bad input names the problem
    assert "lps_min" in put(client, series, "R", [1, 2], hi, 1).json()
    assert "version" in client.put(f"/api/series/{series.pk}/boxes/R/", json.dumps({"lps_min": lo, "lps_max": hi}),
                                   content_type="application/json").json()
    assert client.get(f"/api/series/{series.pk}/boxes/X/").status_code == 404
    # move, then undo: the earlier coordinates come back as a new version
    assert put(client, series, "R", [-70, -200, 150], hi, 1).json()["version"] == 2
    assert post(client, f"/api/series/{series.pk}/boxes/R/undo/", 1).status_code == 409
    undone = post(client, f"/api/series/{series.pk}/boxes/R/undo/", 2).json()
    assert undone["version"] == 3 and undone["lps_min"] == lo
    # confirm: one side confirmed leaves the series "proposed" until both are
    assert put(client, series, "L", [20, -200, 150], [70, -150, 200], 0).status_code == 200
    assert post(client, f"/api/series/{series.pk}/boxes/R/confirm/", 3).json()["status"] == "confirmed"
    assert client.get(f"/api/series/{series.pk}/boxes/").json()["box_status"] == "proposed"
    post(client, f"/api/series/{series.pk}/boxes/L/confirm/", 1)
    data = client.get(f"/api/series/{series.pk}/boxes/").json()
    assert data["box_status"] == "confirmed" and data["boxes"]["L"]["version"] == 2
    history = client.get(f"/api/series/{series.pk}/boxes/R/history/").json()
    assert [h["version"] for h in history] == [4, 3, 2, 1]
    assert [h["status"] for h in history] == ["confirmed", "proposed", "proposed", "proposed"]
    assert [h["action"] for h in history] == ["confirm", "undo", "edit", "edit"]
    assert history[0]["change"] == "proposed → confirmed" and history[3]["change"] == "created (ui)"
    assert history[2]["change"] == "right face R 10.0 mm" and history[1]["change"] == "undo → v1; right face L 10.0 mm"
    # undo of the confirmation, then nothing before the first version
    assert post(client, f"/api/series/{series.pk}/boxes/L/undo/", 2).json()["status"] == "proposed"
    resp = post(client, f"/api/series/{series.pk}/boxes/L/undo/", 3)
    assert resp.status_code == 400 and "Nothing to undo" in resp.json()["detail"]


def test_worklist_rows_filters_counts_and_next_unconfirmed(ct_series, users, client):
    from annotations.services.boxes import mark_not_covered, save_box

    a = ct_series(members=[users["clinician"]], patient="P001")
    b = ct_series(dataset=a.dataset, patient="P002")
    c = ct_series(dataset=a.dataset, patient="P003")
    for side, lo, hi in (("R", [-60, -200, 150], [-10, -150, 200]), ("L", [20, -200, 150], [70, -150, 200])):
        save_box(a, side, lo, hi, status="confirmed")
        save_box(b, side, lo, hi)
    mark_not_covered(c, "field of view ends above the kidneys")
    p = make_prediction(b, "abnormal", 0.8)
    p.cautions = ["the model (run #1) was trained on this patient's scans <b>x</b>"]
    p.save(update_fields=["cautions"])
    from annotations.models import Label

    Label.objects.create(patient=a.patient, value="normal", source="csv")
    Label.objects.create(patient=b.patient, value="normal", source="csv")
    Label.objects.create(patient=b.patient, series=b, value="abnormal", source="ui")  # the series' override
    client.force_login(users["clinician"])
    data = client.get(f"/api/datasets/{a.dataset.pk}/worklist/").json()
    assert [r["label"] for r in data["rows"]] == [a.label, b.label, c.label] == ["normal", "abnormal", None]
    assert client.get(f"/api/datasets/{a.dataset.pk}/worklist/?label=abnormal").json()["rows"][0]["id"] == b.pk
    assert data["counts"] == {"total": 3, "none": 0, "proposed": 1, "confirmed": 1, "not_covered": 1}
    assert [r["patient"] for r in data["rows"]] == ["P001", "P002", "P003"]
    assert data["rows"][1]["verdict"] == "abnormal" and data["rows"][0]["verdict"] is None
    # a verdict's cautions reach the worklist row (a badge with them in its title, as text)
    assert data["rows"][1]["verdict_cautions"] == p.cautions and data["rows"][0]["verdict_cautions"] == []
    page = client.get(f"/datasets/{a.dataset.pk}/").content.decode()
    assert ('title="Caution: the model (run #1) was trained on this patient&#x27;s scans &lt;b&gt;x&lt;/b&gt;">caution'
            in page)
    assert data["next_unconfirmed"] == b.pk
    rows = client.get(f"/api/datasets/{a.dataset.pk}/worklist/?status=confirmed").json()["rows"]
    assert [r["id"] for r in rows] == [a.pk]
    rows = client.get(f"/api/datasets/{a.dataset.pk}/worklist/?verdict=none").json()["rows"]
    assert [r["id"] for r in rows] == [a.pk, c.pk]
    # ?q= finds a scan by the Series UID the run dashboard's copy button gives (pasted with a stray space too)
    for q in (b.series_uid, f" {b.series_uid} ", "p002"):
        rows = client.get(f"/api/datasets/{a.dataset.pk}/worklist/", {"q": q}).json()["rows"]
        assert [r["id"] for r in rows] == [b.pk], q
    assert client.get(f"/api/series/{a.pk}/next-unconfirmed/").json()["series_id"] == b.pk
    assert client.get(f"/api/series/{b.pk}/next-unconfirmed/").json() == {"series_id": None, "url": None,
                                                                           "remaining": 0}
    page = client.get(f"/datasets/{a.dataset.pk}/?status=not_covered")
    assert page.status_code == 200 and b"adrenal region not covered" in page.content and b"P003" in page.content
    assert b"P001" not in page.content.split(b"<tbody>")[1]
    # the viewer page carries the verdict and per-slice scores for the strip
    viewer = client.get(f"/series/{b.pk}/?z_mm=250.3")
    config = json.loads(re.search(rb'id="viewer-config"[^>]*>(.*?)</script>', viewer.content, re.S).group(1))
    assert config["prediction"]["slice_scores"] == [[247.3, 0.2], [250.3, 0.9]] and config["z_mm"] == 250.3


def test_who_may_see_what(ct_series, users, client):
    series = ct_series(members=[users["clinician"]])
    urls = [f"/api/series/{series.pk}/boxes/", f"/api/series/{series.pk}/volume/",
            f"/api/datasets/{series.dataset.pk}/worklist/"]
    for url in urls:
        assert client.get(url).status_code == 401
    client.force_login(users["none"])
    for url in urls:
        assert client.get(url).status_code == 403
    client.force_login(users["lead"])  # a role, but not a member of this dataset
    for url in urls + [f"/series/{series.pk}/", f"/datasets/{series.dataset.pk}/"]:
        assert client.get(url).status_code == 404, url
    assert put(client, series, "R", [0, 0, 0], [1, 1, 1], 0).status_code == 404
    client.force_login(users["admin"])  # admins see every dataset
    assert client.get(f"/series/{series.pk}/").status_code == 200


def test_undo_and_redo_walk_the_whole_history_and_any_version_can_be_restored(ct_series, users, client):
    series = ct_series(members=[users["clinician"]])
    client.force_login(users["clinician"])
    states = [([-60.0 - 2 * n, -200.0, 150.0], [-10.0, -150.0, 200.0 + n]) for n in range(5)]
    for n, (lo, hi) in enumerate(states):
        assert put(client, series, "R", lo, hi, n).json()["version"] == n + 1
    url = f"/api/series/{series.pk}/boxes/R/"
    box = client.get(url).json()
    assert (box["undo_to"], box["redo_to"]) == (4, None)
    version = 5
    for back in (3, 2, 1, 0):  # undo four times: states 4, 3, 2, 1
        box = post(client, url + "undo/", version).json()
        version += 1
        assert box["version"] == version and [box["lps_min"], box["lps_max"]] == list(states[back])
    assert post(client, url + "undo/", version).status_code == 400  # before the first state
    for forward in (1, 2, 3, 4):  # redo four times: back to state 5
        box = post(client, url + "redo/", version).json()
        version += 1
        assert [box["lps_min"], box["lps_max"]] == list(states[forward])
    assert box["redo_to"] is None and post(client, url + "redo/", version).status_code == 400
    # undo twice, then a new edit: redo has nothing left on that branch; undo goes back to where the edit started
    for _ in range(2):
        version = post(client, url + "undo/", version).json()["version"]
    assert client.get(url).json()["lps_min"] == states[2][0]
    version = put(client, series, "R", [-61, -200, 150], [-10, -150, 200], version).json()["version"]
    assert client.get(url).json()["redo_to"] is None
    box = post(client, url + "undo/", version).json()
    assert [box["lps_min"], box["lps_max"]] == list(states[2])
    box = post(client, url + "redo/", box["version"]).json()
    assert box["lps_min"] == [-61, -200, 150]  # redo goes to the newest edit made from this state
    # restore any version; a stale one is refused
    resp = client.post(url + "restore/", json.dumps({"version": box["version"], "restore": 2}),
                       content_type="application/json")
    assert resp.status_code == 200 and resp.json()["lps_min"] == states[1][0]
    assert client.post(url + "restore/", json.dumps({"version": 1, "restore": 2}),
                       content_type="application/json").status_code == 409
    assert "restore" in client.post(url + "restore/", json.dumps({"version": resp.json()["version"], "restore": 99}),
                                    content_type="application/json").json()
    history = client.get(url + "history/").json()
    assert history[0]["action"] == "restore" and history[0]["restored_from"] == 2 and history[0]["updated_by"] == "clin"
    assert len(history) == history[0]["version"] and {h["action"] for h in history} == {"edit", "undo", "redo", "restore"}


BAD_BOXES = [
    # (body, the field the 400 must name)
    ({"lps_min": "123", "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": ["-60", -200, 150], "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": [True, -200, 150], "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": 5.9}, "version"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": "0"}, "version"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": True}, "version"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": -1}, "version"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": 10**40}, "version"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200]}, "version"),
    ({"lps_min": [-60, -200, 150, 4], "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": [-60, -200, 10**400], "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": [-60, -200, 1e308], "lps_max": [-10, -150, 1e309 if False else 200], "version": 0}, "lps_max"),
    ({"lps_min": {"x": 1}, "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": [[1], -200, 150], "lps_max": [-10, -150, 200], "version": 0}, "lps_min"),
    ({"lps_min": [-10, -200, 150], "lps_max": [-60, -150, 200], "version": 0}, "lps_max"),  # min > max
    ({"lps_min": [500, 500, 900], "lps_max": [520, 520, 950], "version": 0}, "lps_min"),  # misses the volume
    ({"lps_min": [-150, -200, 150], "lps_max": [80, -150, 200], "version": 0}, "lps_max"),  # 230 mm > 200
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": 0, "status": "done"}, "status"),
    ({"lps_min": [-60, -200, 150], "lps_max": [-10, -150, 200], "version": 0, "status": 1}, "status"),
]


def test_bad_box_input_is_a_400_naming_the_field_and_malformed_bodies_never_a_500(ct_series, users, client):
    from annotations.services.boxes import save_box
    from annotations.services.findings import save_finding

    series = ct_series(members=[users["clinician"]])
    client.force_login(users["clinician"])
    for body, field in BAD_BOXES:
        resp = client.put(f"/api/series/{series.pk}/boxes/L/", json.dumps(body), content_type="application/json")
        assert resp.status_code == 400, (body, resp.status_code, resp.content[:300])
        assert field in resp.json(), (body, resp.json())
    assert not series.boxes.exists()
    # every write endpoint of boxes and findings: malformed JSON and non-object bodies are 400, nothing changes
    save_box(series, "R", [-60, -200, 150], [-10, -150, 200])
    save_finding(series, "R", comment="x")
    base = f"/api/series/{series.pk}"
    for raw in ('[1, 2, 3]', '"box"', 'null', '{"lps_min": NaN}', '{', '{"version": 1e400}', '{"version": [1]}'):
        for method, url in (("put", "/boxes/R/"), ("post", "/boxes/R/confirm/"), ("post", "/boxes/R/undo/"),
                            ("post", "/boxes/R/redo/"), ("post", "/boxes/R/restore/"), ("put", "/findings/R/"),
                            ("post", "/findings/R/restore/")):
            resp = getattr(client, method)(base + url, raw, content_type="application/json")
            assert resp.status_code == 400, (url, raw, resp.status_code)
    assert series.boxes.get().version == 1 and series.findings.get().version == 1


def test_side_findings_are_versioned_checked_exported_and_handed_to_the_model(ct_series, users, client, tmp_path):
    from django.core.management import call_command

    from annotations.services.boxes import save_box
    from annotations.services.findings import dataset_lesion_markers, lesion_markers

    series = ct_series(members=[users["clinician"]])
    save_box(series, "R", [-60, -200, 150], [-10, -150, 200], status="confirmed")
    client.force_login(users["clinician"])
    url = f"/api/series/{series.pk}/findings/"
    assert client.get(url).json()["findings"] == {"R": None, "L": None}

    def put_finding(side, **body):
        return client.put(f"{url}{side}/", json.dumps(body), content_type="application/json")

    # no findings and no left box yet: a JSON null, not an empty body a client cannot parse
    for what in ("findings", "boxes"):
        resp = client.get(f"/api/series/{series.pk}/{what}/L/")
        assert resp.status_code == 200 and resp["Content-Type"] == "application/json" and resp.json() is None
    resp = put_finding("R", version=0, lesion_centre_lps=[-35, -175, 175], lesion_diameter_mm=18.5,
                       comment="<b>lipid-poor</b> nodule, 35 HU")
    assert resp.status_code == 200, resp.content
    r = resp.json()
    assert r["version"] == 1 and r["gland"] == "seen" and r["lesion_diameter_mm"] == 18.5
    assert r["comment"] == "<b>lipid-poor</b> nodule, 35 HU" and r["updated_by"] == "clin"  # stored as given
    assert put_finding("L", version=0, gland="absent", comment="left adrenalectomy 2019").json()["version"] == 1
    r = put_finding("L", version=1, lesion_centre_lps=[35, -175, 175], lesion_diameter_mm=12.0)
    assert r.status_code == 400 and "gland marked absent cannot carry a lesion marker" in str(r.json())
    # stale versions, half markers, centres outside the volume, bad diameters and non-text are refused
    assert put_finding("R", version=0, comment="again").status_code == 409
    assert put_finding("R", version=0, comment="again").json()["current"]["version"] == 1
    assert put_finding("R", version=0, comment="again").json()["detail"] == (
        "You changed this in another tab or window (now version 1).")
    for body, field in (({"lesion_centre_lps": [-35, -175, 175], "lesion_diameter_mm": None}, "lesion_diameter_mm"),
                        ({"lesion_centre_lps": None}, "lesion_centre_lps"),
                        ({"lesion_centre_lps": [900, -175, 175]}, "lesion_centre_lps"),
                        ({"lesion_diameter_mm": 0}, "lesion_diameter_mm"),
                        ({"lesion_diameter_mm": 450.0}, "lesion_diameter_mm"),
                        ({"lesion_diameter_mm": "12"}, "lesion_diameter_mm"),
                        ({"gland": "missing"}, "gland"), ({"comment": 12}, "comment"),
                        ({"comment": "x" * 2001}, "comment")):
        resp = put_finding("R", version=1, **body)
        assert resp.status_code == 400 and field in resp.json(), (body, resp.status_code, resp.content)
    # clearing the marker keeps the comment; history says what changed; a version can be restored
    assert put_finding("R", version=1, lesion_centre_lps=None, lesion_diameter_mm=None).json()["comment"] \
        == "<b>lipid-poor</b> nodule, 35 HU"
    history = client.get(f"{url}R/history/").json()
    assert [h["change"] for h in history] == ["lesion removed", "lesion 18.5 mm; comment"]
    restored = client.post(f"{url}R/restore/", json.dumps({"version": 2, "restore": 1}),
                           content_type="application/json").json()
    assert restored["version"] == 3 and restored["lesion_diameter_mm"] == 18.5

    # for the model: per-side markers in LPS mm
    markers = lesion_markers(series)
    assert markers["L"] is None and markers["R"].centre_lps == (-35.0, -175.0, 175.0)
    assert markers["R"].diameter_mm == 18.5 and markers["R"].contains([-35, -175, 184]) \
        and not markers["R"].contains([-35, -175, 185])
    assert list(dataset_lesion_markers(dataset=series.dataset)) == [series.pk]
    # for leads: the dataset's findings and the viewer page's config
    rows = client.get(f"/api/datasets/{series.dataset.pk}/findings/").json()["findings"]
    assert [(f["side"], f["gland"], f["patient"]) for f in rows] == [("L", "absent", "P001"), ("R", "seen", "P001")]
    row = client.get(f"/api/datasets/{series.dataset.pk}/worklist/").json()["rows"][0]
    assert row["findings"] == "L gland absent, comment; R lesion 18 mm, comment"
    page = client.get(f"/series/{series.pk}/")
    config = json.loads(re.search(rb'id="viewer-config"[^>]*>(.*?)</script>', page.content, re.S).group(1))
    assert config["findings"]["L"]["gland"] == "absent"
    assert b"<b>lipid-poor</b>" not in page.content  # user text only inside the JSON config, escaped

    # exported with the crop tables: the R row carries its box and findings, the L side (no box) a row of its own
    from io import StringIO
    import csv

    out = StringIO()
    call_command("export_crops", "--dataset", series.dataset.name, stdout=out)
    rows = {r["side"]: r for r in csv.DictReader(StringIO(out.getvalue()))}
    assert rows["R"]["status"] == "confirmed" and float(rows["R"]["lesion_diameter_mm"]) == 18.5
    assert [float(rows["R"][f"lesion_{a}_mm"]) for a in "xyz"] == [-35, -175, 175]
    assert rows["R"]["findings_version"] == "3" and rows["R"]["comment"] == "<b>lipid-poor</b> nodule, 35 HU"
    assert rows["L"]["gland"] == "absent" and rows["L"]["x_min_mm"] == "" and rows["L"]["status"] == ""
    target = tmp_path / "crops.json"
    call_command("export_crops", "--dataset", series.dataset.name, "--format", "json", "--output", str(target))
    doc = json.loads(target.read_text())["series"][0]
    assert doc["findings"]["L"]["gland"] == "absent" and doc["findings"]["R"]["lesion_centre_lps"] == [-35, -175, 175]


def test_volume_slabs_are_the_volume_and_are_prepared_at_import(ct_series, users, client, realct, tmp_path,
                                                                 django_capture_on_commit_callbacks):
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import run_now
    from annotations.models import Dataset, Volume
    from annotations.services.volume_cache import slab_dir, viewer_data_ready
    from annotations.tasks import import_studies, prepare_viewer, start_import
    from tests.plugins.store import make_store_cohort

    series = ct_series(members=[users["clinician"]])
    client.force_login(users["clinician"])
    header = client.get(f"/api/series/{series.pk}/volume/").json()
    plan = header["slabs"]
    assert plan["count"] * plan["slices"] >= 112 > (plan["count"] - 1) * plan["slices"]
    assert header["series"]["patient"] == "P001" and header["series"]["series_description"] == "Abdomen 3 mm"
    assert not viewer_data_ready(series.volume)  # never opened, never imported: prepared on the first request
    parts = []
    for n in range(plan["count"]):
        resp = client.get(plan["url"].replace("{n}", str(n)))
        assert resp.status_code == 200 and resp["Content-Encoding"] == "gzip"
        k0, k1 = map(int, resp["X-Slab-Slices"].split(","))
        part = np.frombuffer(gzip.decompress(b"".join(resp.streaming_content)), "<i2").reshape(k1 - k0, 101, 122)
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate(parts), load_nifti(realct["example_ct"]).array)
    assert client.get(plan["url"].replace("{n}", str(plan["count"]))).status_code == 404

    # an import queues the preparation of the scans it brought in; the job writes their slabs
    root = tmp_path / "cohort"
    make_store_cohort(root, patients=1)
    ds = Dataset.objects.create(name="imported")
    with django_capture_on_commit_callbacks(execute=False):
        job = run_now(import_studies, start_import(ds, str(root), send=False, propose=False))
    assert job.status == "succeeded", job.error
    assert job.message.startswith("2 series imported, ") and job.message.endswith(" 0 failed"), job.message
    prep = Job.objects.get(kind="prepare_viewer")
    volumes = Volume.objects.filter(series__study__patient__dataset=ds)
    assert sorted(prep.params["series_ids"]) == sorted(v.series_id for v in volumes) and len(volumes) == 2
    assert not any(viewer_data_ready(v) for v in volumes)
    prep = run_now(prepare_viewer, prep)
    assert prep.status == "succeeded" and len(prep.result["prepared"]) == 2
    assert all(viewer_data_ready(v) for v in volumes) and all((slab_dir(v) / "slab-0000.i16.gz").exists() for v in volumes)


def test_geometry_notes_are_kept_whole_and_shown_as_text_in_the_viewer_and_worklist(realct, users, client, tmp_path,
                                                                                     monkeypatch, db):
    """A volume's notes (reorientation, qform/sform, tilt, spacing) reach the reader: the viewer's side panel lists
    them one apiece and the worklist row carries a 'notes' badge with them in its title, all as text (markup in a
    note is escaped). Import keeps notes longer than 300 characters whole: the last one is often the one about
    left/right."""
    import shutil

    from annotations.models import Dataset, Series
    from annotations.services import importer

    long_note = "variable slice increment (" + ", ".join(f"{s:.2f} mm x{n}" for s, n in
                                                         zip([1.0, 1.25, 2.5, 5.0] * 8, range(2, 34))) + ")"
    markup = 'qform and sform disagree <script>alert("x")</script> & <b>bold</b>'
    lps = "put on the store's LPS axes (flipped i; no interpolation)"
    read = importer.read_nifti_entry

    def with_notes(path, **kw):
        entry = read(path, **kw)
        entry.notes[:] = [long_note, markup, lps]
        return entry

    monkeypatch.setattr(importer, "read_nifti_entry", with_notes)
    src = tmp_path / "nifti"
    src.mkdir()
    shutil.copy(realct["example_ct_sm"], src / "case1.nii.gz")
    ds = Dataset.objects.create(name="notes")
    ds.members.add(users["clinician"])
    importer.import_path(ds, src)
    series = Series.objects.get(study__patient__dataset=ds)
    assert len(series.volume.notes) > 300 and series.volume.notes.endswith(lps)
    assert series.volume.note_list == [long_note, markup, lps]

    client.force_login(users["clinician"])
    page = client.get(f"/series/{series.pk}/").content.decode()
    panel = re.search(r'<section class="vw-geometry-notes" id="geometry-notes".*?</section>', page, re.S).group(0)
    assert "<h3>Geometry notes</h3>" in panel
    items = re.findall(r"<li>(.*?)</li>", panel, re.S)
    assert items == [long_note, 'qform and sform disagree &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; '
                                '&lt;b&gt;bold&lt;/b&gt;', "put on the store&#x27;s LPS axes (flipped i; no interpolation)"]
    assert "<script>alert" not in page and "<b>bold" not in page

    rows = client.get(f"/api/datasets/{ds.pk}/worklist/").json()["rows"]
    assert rows[0]["geometry_notes"] == [long_note, markup, lps]
    worklist = client.get(f"/datasets/{ds.pk}/").content.decode()
    badge = re.search(r'<span class="badge notes geometry-notes" title="([^"]*)">notes</span>', worklist).group(1)
    assert badge.startswith("Geometry notes: variable slice increment") and "&lt;script&gt;" in badge
    assert "<script>alert" not in worklist

    # a scan without notes shows neither
    type(series.volume).objects.filter(pk=series.volume.pk).update(notes="")
    assert 'id="geometry-notes"' not in client.get(f"/series/{series.pk}/").content.decode()
    assert "badge notes" not in client.get(f"/datasets/{ds.pk}/").content.decode()


def test_a_lesion_marker_inside_the_other_glands_box_is_refused_naming_that_side(ct_series, users, client):
    """The viewer opens with R selected: an `x` drag across the left gland's lesion was stored as the R lesion (and
    credited to the right gland by lesion labels and the sensitivity by size). A centre in the other side's box
    and not in its own is refused, for every writer (save_finding); the right side still takes its own marker."""
    from annotations.services.boxes import save_box
    from annotations.services.findings import FindingInvalid, save_finding

    series = ct_series(members=[users["clinician"]])
    save_box(series, "R", [-60, -200, 150], [-10, -150, 200], status="confirmed")
    save_box(series, "L", [10, -200, 150], [60, -150, 200], status="confirmed")
    client.force_login(users["clinician"])
    url = f"/api/series/{series.pk}/findings/"

    def put_finding(side, **body):
        return client.put(f"{url}{side}/", json.dumps(body), content_type="application/json")

    resp = put_finding("R", version=0, lesion_centre_lps=[35, -175, 175], lesion_diameter_mm=18.0)
    assert resp.status_code == 400, resp.content
    message = " ".join(resp.json()["lesion_centre_lps"])
    assert "L (left) gland's box" in message and "select L" in message
    assert client.get(f"{url}R/").json() is None  # nothing stored on the wrong side
    with pytest.raises(FindingInvalid, match="L \\(left\\) gland's box"):
        save_finding(series, "R", lesion_centre_lps=[35, -175, 175], lesion_diameter_mm=18.0)
    # on its own side, or outside both boxes, a marker is stored
    assert put_finding("L", version=0, lesion_centre_lps=[35, -175, 175], lesion_diameter_mm=18.0).status_code == 200
    assert put_finding("R", version=0, lesion_centre_lps=[-35, -175, 175], lesion_diameter_mm=12.0).status_code == 200
    assert put_finding("R", version=1, lesion_centre_lps=[0, -175, 175], lesion_diameter_mm=12.0).status_code == 200
    # a marker already stored is not re-judged when only the comment changes (boxes may move after marking)
    save_box(series, "L", [-10, -200, 150], [60, -150, 200], status="confirmed")
    assert put_finding("R", version=2, comment="midline mass").status_code == 200


def test_a_box_drawn_over_the_other_glands_box_is_refused_naming_that_side(ct_series, users, client):
    """As for lesion markers: with R selected (the viewer's start), a box drawn over the left gland's box was stored
    as the right box, so the run would crop the left gland twice and never the right one. A box whose centre lies
    in the other side's box, that box's centre in it, is refused for every writer (save_box); moving a side's own
    box, and boxes that merely touch, are stored."""
    from annotations.services.boxes import BoxInvalid, save_box

    series = ct_series(members=[users["clinician"]])
    save_box(series, "L", [10, -200, 150], [60, -150, 200], status="confirmed")
    client.force_login(users["clinician"])

    def put_box(side, lo, hi, version):
        return client.put(f"/api/series/{series.pk}/boxes/{side}/", json.dumps(
            {"lps_min": lo, "lps_max": hi, "version": version, "status": "confirmed"}), content_type="application/json")

    resp = put_box("R", [12, -195, 155], [58, -152, 198], 0)
    assert resp.status_code == 400, resp.content
    assert "L (left) gland's box" in resp.content.decode() and "select L" in resp.content.decode()
    assert client.get(f"/api/series/{series.pk}/boxes/R/").json() is None
    with pytest.raises(BoxInvalid, match="L \\(left\\) gland's box"):
        save_box(series, "R", [5, -205, 145], [65, -145, 205], source="csv")
    assert put_box("L", [12, -195, 155], [58, -152, 198], 1).status_code == 200  # its own box moves freely
    assert put_box("R", [-60, -200, 150], [-10, -150, 200], 0).status_code == 200
    assert put_box("R", [-40, -200, 150], [12, -150, 200], 1).status_code == 200  # overlapping the edge only


def test_a_verdict_pages_link_opens_the_viewer_on_that_verdict_not_a_newer_one(ct_series, users, client):
    """The verdict page's "Open in the viewer" went to /series/<id>/?z_mm=..., and the viewer always shows the scan's
    latest verdict: following an older verdict (another model, judged again since) showed the newer one's verdict,
    per-side findings, strip and evidence under the older one's slice, with nothing to say so. The link now carries
    ?verdict=<id>; the viewer shows that verdict when the user may see it on this scan (saying a newer one exists),
    else the latest."""
    from adrenal_site.jobs.models import Job
    from inference.models import Prediction

    series = ct_series(members=[users["clinician"]])
    old = make_prediction(series, "abnormal", 0.8)
    job = Job.objects.create(kind="predict", task_name="inference.tasks.predict_job", created_by=users["clinician"],
                             status="succeeded", params={"series_id": series.pk})
    Prediction.objects.filter(pk=old.pk).update(job=job)
    new = make_prediction(series, "normal", 0.1)
    client.force_login(users["clinician"])
    html = client.get(f"/verdicts/jobs/{job.pk}/").content.decode()
    link = re.search(r'id="open-viewer" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert link.startswith(f"/series/{series.pk}/?verdict={old.pk}&z_mm=250.3"), link

    def shown(url):
        page = client.get(url)
        assert page.status_code == 200
        config = json.loads(re.search(rb'id="viewer-config"[^>]*>(.*?)</script>', page.content, re.S).group(1))
        return config["prediction"], page.content.decode()

    p, html = shown(link)
    assert (p["id"], p["verdict"], p["is_latest"]) == (old.pk, "abnormal", False)
    assert 'id="verdict-not-latest"' in html and "Verdict: <strong>Abnormal" in html
    p, html = shown(f"/series/{series.pk}/")
    assert (p["id"], p["verdict"], p["is_latest"]) == (new.pk, "normal", True) and "verdict-not-latest" not in html
    # a verdict of another scan, one that does not exist, or no number: the latest, as before
    other = make_prediction(ct_series(members=[users["clinician"]], patient="P002"), "abnormal", 0.9)
    for query in (f"?verdict={other.pk}", "?verdict=999999", "?verdict=x", "?verdict=99999999999999999999"):
        assert shown(f"/series/{series.pk}/{query}")[0]["id"] == new.pk, query


def test_a_scan_without_boxes_reads_no_box_on_the_worklist_its_filter_and_the_viewer(ct_series, users, client):
    """The worklist's count says "no box"; the row's badge, the Boxes filter and the viewer's badge said "None"
    (the status' enum name), which reads as Python's None or as "no lesion"; all four now say "no box"."""
    import re as _re

    series = ct_series(members=[users["clinician"]], patient="P001")
    client.force_login(users["clinician"])
    data = client.get(f"/api/datasets/{series.dataset.pk}/worklist/").json()
    assert data["rows"][0]["box_status"] == "none" and data["rows"][0]["box_status_display"] == "no box"
    page = client.get(f"/datasets/{series.dataset.pk}/").content.decode()
    assert '<option value="none" >no box</option>' in page
    assert _re.search(r'<span class="badge none"[^>]*>no box</span>', page)
    viewer = client.get(f"/series/{series.pk}/").content.decode()
    assert _re.search(r'id="series-status" data-status="none">no box</span>', viewer)
    assert ">None<" not in page + viewer


def test_the_worklist_states_each_verdicts_probability_with_the_value_it_is_abnormal_from(ct_series, users, client):
    """The worklist showed a verdict's bare number ("normal 0.32") while the verdict pages say "0.364 (abnormal
    from 0.567)": a reader could not tell a probability of 0.32 for a model whose cut-off is 0.57 from one whose
    cut-off is 0.3. The row now says "p 0.32 (abnormal from 0.57)" for a per-gland verdict (its glands'
    ``probability_cutoff``), the API gives ``probability_cutoff``, and a verdict without one keeps "p 0.80"."""
    a = ct_series(members=[users["clinician"]], patient="P001")
    b = ct_series(dataset=a.dataset, patient="P002")
    p = make_prediction(a, "normal", 0.3241)
    p.side_details = {"R": {"score": 0.4, "probability": 0.3241, "probability_cutoff": 0.5671, "verdict": "normal"},
                      "L": {"score": 0.1, "probability": 0.1, "probability_cutoff": 0.5671, "verdict": "normal"}}
    p.save(update_fields=["side_details"])
    make_prediction(b, "abnormal", 0.8)
    client.force_login(users["clinician"])
    rows = client.get(f"/api/datasets/{a.dataset.pk}/worklist/").json()["rows"]
    assert [(r["probability"], r["probability_cutoff"]) for r in rows] == [(0.3241, 0.5671), (0.8, None)]
    page = client.get(f"/datasets/{a.dataset.pk}/").content.decode()
    assert ">p 0.32 (abnormal from 0.57)</span>" in page
    assert ">p 0.80</span>" in page


def test_a_multi_valued_kernel_reads_as_words_not_with_dicoms_backslash(ct_series, users, client):
    """Siemens writes ConvolutionKernel as two values (``Br38f\\3``: the kernel and its iterative strength, as the
    real TotalSegmentator series has it); the viewer's overlay read "Kernel Br38f\\3". It reads "Br38f, 3"."""
    series = ct_series(members=[users["clinician"]])
    client.force_login(users["clinician"])
    for stored, shown in (("Br38f\\3", "Br38f, 3"), ("B30f", "B30f"), ("", None)):
        series.convolution_kernel = stored
        series.save(update_fields=["convolution_kernel"])
        assert client.get(f"/api/series/{series.pk}/volume/").json()["series"]["kernel"] == shown
