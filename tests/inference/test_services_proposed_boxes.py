"""What the app does with the proposer's answer (issue 13, app side), on real files and a one-gland scan:

- each proposed box keeps its confidence, method and note, shown in the API and the worklist;
- a scan that holds one gland keeps that side's box and a note for the other side (the real 20-slice DICOM slab
  with TotalSegmentator's mask of its right adrenal only; a synthetic scan cut between the glands), is confirmed
  with that one box, gets 2.5D images and a verdict on the side it holds, the other side "not assessable: <note>";
- the 2.5D images span the boxes' z range, and a box change rebuilds them with the new range.
"""
from __future__ import annotations

import html

from pathlib import Path

import numpy as np
import pytest

from inference.ml.geometry import voxel_to_lps
from inference.ml.volume import load_nifti
from tests.inference.test_services_predict import model_run  # noqa: F401 - the fixture
from tests.plugins.proposals import crop, synthetic_truth

pytestmark = pytest.mark.slow


def one_gland_scan(seed: int = 3021, keep: str = "R"):
    """A synthetic abnormal scan (tiny profile) cut between the glands, keeping ``keep``; with the kept side's
    gland and lesion points (LPS mm)."""
    from synthetic import make_patient

    scan = make_patient(seed, abnormal=True, profile="tiny")
    x_mid = (scan.truth.glands["R"].lps_max[0] + scan.truth.glands["L"].lps_min[0]) / 2
    i_cut = int(round((x_mid - scan.volume.affine[0, 3]) / scan.volume.affine[0, 0]))
    cut = {"i": slice(0, i_cut)} if keep == "R" else {"i": slice(i_cut, None)}
    return crop(scan.volume, **cut), synthetic_truth(scan, keep, **cut)


def test_real_dicom_slab_of_one_gland_with_its_mask(db, settings, tmp_path, realct):
    """The real DICOM slab, imported by the store's importer, with TotalSegmentator's multilabel mask that
    holds only the right adrenal (label 8): the right box from the mask, the left side noted, never the whole
    scan turned away ("not covered: the mask has no L adrenal voxels" before)."""
    from annotations.models import CropBox, Dataset, Series
    from annotations.services.importer import import_path
    from annotations.services.proposals import propose_series

    settings.MEDIA_ROOT = tmp_path / "media"
    ds = Dataset.objects.create(name="slab")
    import_path(ds, realct["example_ct_dicom"])
    series = Series.objects.get(study__patient__dataset=ds, is_scan=True)
    seg = realct["seg_dir"] / "example_seg_dicom.nii.gz"
    entry = propose_series([series], masks=str(seg))["series"][0]
    assert entry["status"] == "proposed", entry
    assert set(entry["boxes"]) == {"R"} and entry["boxes"]["R"]["method"] == "mask"
    assert entry["boxes"]["R"]["confidence"] == 1.0
    assert entry["uncovered"] == {"L": "the mask has no left adrenal voxels (label 9)"}
    box = CropBox.objects.get(series=series, side="R")
    mask = load_nifti(seg, dtype=np.uint8)
    pts = voxel_to_lps(mask.affine, np.argwhere(mask.array == 8)[:, ::-1])
    assert len(pts) > 500
    assert np.all(pts >= np.asarray(box.lps_min) - 1e-6) and np.all(pts <= np.asarray(box.lps_max) + 1e-6)

    # without masks the atlas proposer boxes the right gland of this slab too, with its confidence
    series.boxes.all().delete()
    Series.objects.filter(pk=series.pk).update(uncovered_sides={}, box_status="none")
    series.refresh_from_db()
    entry = propose_series([series])["series"][0]
    assert entry["status"] == "proposed" and "R" in entry["boxes"], entry
    r = entry["boxes"]["R"]
    assert r["method"].startswith("atlas") and 0.0 < r["confidence"] <= 1.0
    assert np.all(pts >= np.asarray(r["lps_min"]) - 1e-6) and np.all(pts <= np.asarray(r["lps_max"]) + 1e-6)
    assert np.all(np.subtract(r["lps_max"], r["lps_min"]) <= 70.0 + 1e-6)
    for side in set("RL") - set(entry["boxes"]):  # a side without a box says why
        assert entry["uncovered"][side]


@pytest.mark.parametrize("layout", ["joined", "side"])
def test_one_gland_scan_from_proposal_to_verdict(model_run, make_scan, settings, client_as, layout):  # noqa: F811
    from annotations.models import CropBox, Series
    from annotations.services.proposals import propose_series
    from annotations.services.worklist import worklist_rows
    from inference.ml.images25d import image_config
    from inference.models import Image25D
    from inference.services.images import build_series
    from inference.services.prediction import predict_series

    if layout == "side":
        model_run.config = {**model_run.config, "image": {"layout": "side", "side_px": 48}, "aggregator": "sides"}
        model_run.save()
    volume, truth = one_gland_scan()
    series = make_scan(volume, dataset="one-gland")
    entry = propose_series([series])["series"][0]
    assert entry["status"] == "proposed" and set(entry["boxes"]) == {"R"}, entry
    assert "outside the field of view" in entry["uncovered"]["L"]
    series.refresh_from_db()
    box = CropBox.objects.get(series=series, side="R")
    assert np.all(truth >= np.asarray(box.lps_min) - 1e-6) and np.all(truth <= np.asarray(box.lps_max) + 1e-6)
    assert box.source == "atlas" and 0.0 < box.confidence <= 1.0
    assert box.provenance == f"proposed by atlas registration, confidence {box.confidence:.2f}"

    # the API and the worklist say where the box came from and why the other side has none
    doc = client_as("admin").get(f"/api/series/{series.pk}/boxes/").json()
    assert doc["boxes"]["R"]["provenance"] == box.provenance and doc["boxes"]["R"]["method"] == "atlas"
    assert doc["boxes"]["R"]["confidence"] == box.confidence and doc["boxes"]["L"] is None
    assert "outside the field of view" in doc["uncovered_sides"]["L"]
    row = worklist_rows(series.dataset)["rows"][0]
    assert row["box_status"] == "proposed"
    assert [b["text"] for b in row["box_sides"]] == [f"R {box.provenance}", "L not covered"]
    page = client_as("admin").get(f"/datasets/{series.dataset.pk}/").content.decode()
    assert box.provenance in page and "L not covered" in page

    # and the crop-table exports carry them
    from annotations.services.crop_tables import mm_json, mm_rows

    exported = mm_json(Series.objects.filter(pk=series.pk))["series"][0]
    assert exported["boxes"]["R"]["confidence"] == box.confidence and exported["uncovered"] == series.uncovered_sides
    (csv_row,) = [r for r in mm_rows(Series.objects.filter(pk=series.pk)) if r["side"] == "R"]
    assert csv_row["confidence"] == box.confidence and csv_row["source"] == "atlas" and csv_row["note"] == box.note

    # confirming the one box (as the viewer does) keeps how it was made, and confirms the scan
    r = client_as("admin").post(f"/api/series/{series.pk}/boxes/R/confirm/", {"version": box.version},
                                content_type="application/json")
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    assert r.json()["provenance"] == box.provenance and r.json()["note"] == box.note
    series.refresh_from_db()
    assert series.box_status == Series.BoxStatus.CONFIRMED and "L" in series.uncovered_sides

    # joined 2.5D images of the one side, the other half blank, over the box's z range
    result = build_series(series, image_config({"image": {"side_px": 16, "pixel_spacing_mm": 2.0}}))
    assert result.get("built") and result["images"] > 0, result
    rows = list(Image25D.objects.filter(series=series).order_by("slice_index"))
    z = np.array([r.z_mm for r in rows])
    assert z.min() >= box.lps_min[2] and z.max() <= box.lps_max[2]
    img = np.load(Path(settings.MEDIA_ROOT) / rows[len(rows) // 2].file.name)
    assert img.shape == (3, 16, 32) and not img[..., 16:].any() and img[..., :16].any()

    # a verdict on the side the scan holds; the other side "not assessable" with its note
    p = predict_series(series, model_run)
    assert p.verdict in ("normal", "abnormal"), p.reason
    assert set(p.sides) == {"R"}
    assert p.side_details["L"]["verdict"] == "not_assessable"
    assert p.side_details["L"]["reason"].startswith("not assessable: ")
    assert "outside the field of view" in p.side_details["L"]["reason"]
    if layout == "side":
        assert p.side_details["R"]["verdict"] in ("normal", "abnormal")
    page = client_as("admin").get(f"/series/{series.pk}/").content.decode()
    assert '<tr data-side="L">' in page and html.escape(p.side_details["L"]["reason"]) in page
    # the DICOM node's report names the side it could not judge
    from inference.services.dicom_node.answers import findings_of

    findings = findings_of(p)
    assert set(findings.sides) == {"R"} and findings.reason == f"L: {p.side_details['L']['reason']}"


def test_predict_json_gives_the_reason_of_an_unjudged_side(model_run, tmp_path):  # noqa: F811
    """``predict --json`` on a one-gland scan: the side it does not hold is null in ``sides`` and its reason
    is the stored Prediction's ``side_details`` reason ("not assessable: <note>"); the text line says it too."""
    import json
    from io import StringIO

    from django.core.management import call_command

    from inference.ml.volume import save_nifti
    from inference.models import Prediction

    volume, _ = one_gland_scan()
    path = save_nifti(volume, tmp_path / "one_gland.nii.gz")
    out = StringIO()
    call_command("predict", str(path), "--run", str(model_run.pk), "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert doc["verdict"] in ("normal", "abnormal") and "reason" not in doc, doc
    p = Prediction.objects.get(pk=doc["prediction"])
    assert doc["sides"]["L"] is None and doc["sides"]["R"] is not None
    assert doc["side_reasons"] == {"L": p.side_details["L"]["reason"]}
    assert doc["side_reasons"]["L"].startswith("not assessable: ") and "outside the field of view" in doc["side_reasons"]["L"]
    out = StringIO()
    call_command("predict", str(path), "--run", str(model_run.pk), stdout=out)  # the same scan, judged again
    assert f"L {p.side_details['L']['reason']}" in out.getvalue()


def test_a_rerun_removes_its_own_box_on_a_side_found_outside_but_never_a_persons(make_scan):
    from annotations.models import CropBox
    from annotations.services.boxes import save_box
    from annotations.services.proposals import propose_series

    volume, _ = one_gland_scan(seed=3023)
    series = make_scan(volume, dataset="rerun")
    for source, kept in (("atlas", False), ("ui", True)):
        # an L box from an earlier proposal, or one a person drew (where does not matter: 20 mm at the corner)
        lo = np.asarray(volume.affine)[:3, 3]
        save_box(series, "L", lo, lo + 20.0, source=source)
        entry = propose_series([series])["series"][0]
        assert set(entry["boxes"]) == ({"R", "L"} if kept else {"R"}), (source, entry)
        assert ("L" in entry.get("uncovered", {})) is not kept
        assert CropBox.objects.filter(series=series, side="L").exists() is kept


def test_images_follow_the_tight_boxes_and_a_box_change_rebuilds_them(make_scan, real_scans, settings, tmp_path,
                                                                      django_capture_on_commit_callbacks):
    """The real example CT: proposed boxes of at most 70 mm give images over their z range only (the old
    boxes' 115 mm gave over 35 images); moving a box's z faces queues that scan's rebuild, and the rebuilt
    images follow."""
    from adrenal_site.jobs.models import Job
    from annotations.models import CropBox
    from annotations.services.boxes import save_box
    from annotations.services.proposals import propose_series
    from inference.models import Image25D
    from inference.tasks import build_images_job

    settings.MEDIA_ROOT = tmp_path
    settings.ADRENAL_AUTO_REBUILD_IMAGES = True
    series = make_scan(real_scans["example_ct_sm"][0], dataset="tight")
    assert propose_series([series])["series"][0]["status"] == "proposed"
    small = {"side_px": 16, "pixel_spacing_mm": 2.0}
    job = Job.objects.create(kind="images25d", params={})
    assert build_images_job.job_fn(job, series_ids=[series.pk], use_proposed=True, image=small)["built"] == 1

    def z_range():
        boxes = list(CropBox.objects.filter(series=series))
        return min(b.lps_min[2] for b in boxes), max(b.lps_max[2] for b in boxes)

    def image_z():
        return np.array(Image25D.objects.filter(series=series).order_by("slice_index").values_list("z_mm", flat=True))

    lo, hi = z_range()
    z = image_z()
    assert hi - lo <= 70.0 + 1e-6 and len(z) <= 70 / 3 and z.min() >= lo and z.max() <= hi
    assert np.allclose(np.diff(z), 3.0) and (z.min() - lo) <= 2 * 3.0 and (hi - z.max()) <= 2 * 3.0

    with django_capture_on_commit_callbacks(execute=False):
        for b in CropBox.objects.filter(series=series):  # each box's top face 30 mm above its bottom face
            save_box(series, b.side, b.lps_min, [*b.lps_max[:2], b.lps_min[2] + 30.0], status="proposed", source="ui")
    queued = Job.objects.filter(kind="images25d", status="queued").exclude(pk=job.pk)
    assert [j.params["series_ids"] for j in queued] == [[series.pk]]
    assert build_images_job.job_fn(queued[0], **queued[0].params | {"image": small})["built"] == 1
    lo2, hi2 = z_range()
    z2 = image_z()
    assert hi2 < hi and z2.max() <= hi2 and z2.min() >= lo2 and len(z2) < len(z)
