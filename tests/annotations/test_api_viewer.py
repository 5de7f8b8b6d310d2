"""The viewer's API: compact volume data, boxes with versions (409 on stale edits), confirm, undo, history,
worklist rows with filters and counts, next unconfirmed scan, and who may see what."""
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
    resp = put(client, series, "R", [0, 0, 0], [1, 1, 1], 0)
    assert resp.status_code == 409 and resp.json()["current"]["version"] == 1
    assert resp.json()["current"]["lps_min"] == lo
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
    # nothing to undo before the first version
    assert post(client, f"/api/series/{series.pk}/boxes/L/undo/", 2).status_code == 200
    assert post(client, f"/api/series/{series.pk}/boxes/L/undo/", 3).status_code == 200


def test_worklist_rows_filters_counts_and_next_unconfirmed(ct_series, users, client):
    from annotations.services.boxes import mark_not_covered, save_box

    a = ct_series(members=[users["clinician"]], patient="P001")
    b = ct_series(dataset=a.dataset, patient="P002")
    c = ct_series(dataset=a.dataset, patient="P003")
    for side, lo, hi in (("R", [-60, -200, 150], [-10, -150, 200]), ("L", [20, -200, 150], [70, -150, 200])):
        save_box(a, side, lo, hi, status="confirmed")
        save_box(b, side, lo, hi)
    mark_not_covered(c, "field of view ends above the kidneys")
    make_prediction(b, "abnormal", 0.8)
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
    assert data["next_unconfirmed"] == b.pk
    rows = client.get(f"/api/datasets/{a.dataset.pk}/worklist/?status=confirmed").json()["rows"]
    assert [r["id"] for r in rows] == [a.pk]
    rows = client.get(f"/api/datasets/{a.dataset.pk}/worklist/?verdict=none").json()["rows"]
    assert [r["id"] for r in rows] == [a.pk, c.pk]
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
