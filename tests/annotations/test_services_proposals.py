"""The proposal job and ``propose_crops``: boxes saved as proposals, confirmed boxes kept, idempotent reruns,
"not covered" scans, one broken scan reported while the others are proposed."""
from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from adrenal_site.jobs.models import Job
from annotations.services.boxes import save_box
from annotations.models import CropBox, Dataset, Series
from annotations.tasks import propose_crops, start_proposals
from inference.ml.geometry import voxel_to_lps
from inference.ml.volume import Volume


def chest_only() -> Volume:
    """A chest-only scan. (The top slices of example_ct served before, but they hold the top of the left gland,
    which the atlas proposer rightly boxes; the real CT has no slices wholly above the glands.)"""
    from synthetic import make_patient

    return make_patient(9, abnormal=False, profile="tiny", coverage="chest_only").volume


def run(dataset=None, series_ids=None, masks=None) -> Job:
    """The job function on a Job row, in this process (a re-delivered task runs it the same way)."""
    job = start_proposals(dataset=dataset, series_ids=series_ids, masks=masks, send=False)
    job.result = propose_crops.job_fn(job, **job.params)
    return job


@pytest.mark.django_db
def test_job_proposes_keeps_confirmed_and_is_idempotent(make_scan, real_scans):
    volume, seg = real_scans["example_ct_sm"]
    scan = make_scan(volume, patient="P1")
    chest = make_scan(chest_only(), patient="P2")
    broken = make_scan(volume, patient="P3")
    broken.volume.file.storage.delete(broken.volume.file.name)
    dataset = Dataset.objects.get(name="d")

    job = run(dataset)
    entries = {e["id"]: e for e in job.result["series"]}
    assert entries[scan.pk]["status"] == "proposed" and set(entries[scan.pk]["boxes"]) == {"R", "L"}
    assert entries[chest.pk]["status"] == "not_covered" and "chest only" in entries[chest.pk]["reason"]
    assert "error" in entries[broken.pk] and entries[broken.pk]["status"] == "none"
    for side, label in (("R", 8), ("L", 9)):
        box = CropBox.objects.get(series=scan, side=side)
        assert box.status == "proposed" and box.source == "atlas" and box.version == 1
        pts = voxel_to_lps(seg.affine, np.argwhere(seg.array == label)[:, ::-1])
        assert np.all(pts >= np.asarray(box.lps_min) - 1e-6) and np.all(pts <= np.asarray(box.lps_max) + 1e-6)
    assert Series.objects.get(pk=chest.pk).box_status == "not_covered"

    # a clinician confirms a changed right box; a rerun keeps it and saves nothing new
    save_box(scan, "R", [-40, -170, 120], [-10, -120, 170], status="confirmed", source="ui", expected_version=1)
    again = run(dataset)
    assert CropBox.objects.get(series=scan, side="R").lps_min == [-40, -170, 120]
    assert CropBox.objects.get(series=scan, side="R").status == "confirmed"
    assert CropBox.objects.get(series=scan, side="L").version == 1
    assert {e["id"]: e["status"] for e in again.result["series"]}[chest.pk] == "not_covered"


@pytest.mark.django_db
def test_job_for_given_series_only(make_scan, real_scans):
    a = make_scan(real_scans["example_ct_sm"][0], patient="A")
    b = make_scan(real_scans["example_ct_sm"][0], patient="B")
    job = run(series_ids=[b.pk])
    assert [e["id"] for e in job.result["series"]] == [b.pk]
    assert not a.boxes.exists() and b.boxes.count() == 2


@pytest.mark.django_db(transaction=True)  # the command runs the Job, which closes its connections after
def test_propose_crops_command_json(make_scan, real_scans):
    scan = make_scan(real_scans["example_ct_sm"][0], dataset="demo")
    out = StringIO()
    call_command("propose_crops", "--dataset", "demo", "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert list(doc) == ["series"] and len(doc["series"]) == 1
    entry = doc["series"][0]
    assert {"id", "series_uid", "status", "boxes"} <= set(entry)
    assert entry["id"] == scan.pk and entry["series_uid"] == scan.series_uid and entry["status"] == "proposed"
    for side in ("R", "L"):
        assert {"lps_min", "lps_max", "confidence", "method", "note"} <= set(entry["boxes"][side])
        assert len(entry["boxes"][side]["lps_min"]) == 3
    assert entry["boxes"]["R"]["lps_max"][0] < entry["boxes"]["L"]["lps_min"][0]  # LPS: right is -x


@pytest.mark.django_db(transaction=True)  # the command runs the Job, which closes its connections after
def test_propose_crops_command_with_masks(make_scan, real_scans, realct, tmp_path):
    scan = make_scan(real_scans["example_ct_sm"][0], dataset="demo", series_uid="1.2.3.4")
    (tmp_path / "1.2.3.4.nii.gz").symlink_to(realct["seg_dir"] / "example_seg_fast.nii.gz")
    out = StringIO()
    call_command("propose_crops", "--dataset", "demo", "--json", "--masks", str(tmp_path), stdout=out)
    entry = json.loads(out.getvalue())["series"][0]
    assert entry["status"] == "proposed"
    assert CropBox.objects.get(series=scan, side="L").source == "mask"
    size = np.asarray(entry["boxes"]["L"]["lps_max"]) - np.asarray(entry["boxes"]["L"]["lps_min"])
    assert (size < 60).all()  # mask boxes are tight: gland extent + voxel + 2 x 5 mm


@pytest.mark.django_db
def test_propose_crops_unknown_dataset():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no dataset named"):
        call_command("propose_crops", "--dataset", "nope")


@pytest.mark.django_db(transaction=True)
def test_masks_folder_per_scan_and_landmarks_for_the_rest(make_scan, real_scans, realct, tmp_path):
    from django.core.management.base import CommandError

    volume = real_scans["example_ct_sm"][0]
    with_masks = make_scan(volume, dataset="many", patient="A", nifti_name="case_a.nii.gz")
    without = make_scan(volume, dataset="many", patient="B")
    (tmp_path / "case_a").symlink_to(realct["seg_fast"])  # per-class folder named by the NIfTI stem
    out = StringIO()
    call_command("propose_crops", "--dataset", "many", "--json", "--masks", str(tmp_path), stdout=out)
    assert {b.series_id: b.source for b in CropBox.objects.filter(side="R")} == {with_masks.pk: "mask",
                                                                                without.pk: "atlas"}
    # one scan's masks given for a dataset of two: refused, not copied onto both
    with pytest.raises(CommandError, match="masks of one scan"):
        call_command("propose_crops", "--dataset", "many", "--masks", str(realct["seg_fast"]), stdout=StringIO())


@pytest.mark.django_db
def test_a_persons_not_covered_is_kept(make_scan, real_scans):
    from annotations.services.boxes import mark_not_covered

    scan = make_scan(real_scans["example_ct_sm"][0], patient="H")
    mark_not_covered(scan, "field of view ends above the kidneys")
    run(series_ids=[scan.pk])
    scan.refresh_from_db()
    assert scan.box_status == "not_covered" and scan.box_status_reason == "field of view ends above the kidneys"
    assert not scan.boxes.exists()
