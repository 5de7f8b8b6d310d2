"""Crop tables: the original study's table round trip (import then export gives the same rows), its voxel
convention checked against the NIfTI array as nibabel loads it, the mm CSV/JSON export, bad rows reported."""
from __future__ import annotations

import csv
import json
from io import StringIO

import nibabel as nib
import numpy as np
import pytest
from django.core.management import call_command

from annotations.services.crop_tables import ORIGINAL_COLUMNS
from annotations.models import CropBox
from inference.ml.volume import load_nifti

ROWS = [
    ["scan_a.nii.gz", "R", 30, 54, 40, 64, 5, 25],
    ["scan_a.nii.gz", "L", 70, 94, 41, 65, 6, 27],
    ["SCAN_B_UID.nii.gz", "left", 60, 90, 30, 70, 0, 30],
]


def write_table(path, rows, header=ORIGINAL_COLUMNS):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def two_scans(make_scan, real_scans):
    volume = real_scans["example_ct_sm"][0]
    a = make_scan(volume, dataset="crops", patient="A", nifti_name="scan_a.nii.gz")
    b = make_scan(volume, dataset="crops", patient="B", series_uid="SCAN_B_UID")
    return a, b


@pytest.mark.django_db
def test_original_table_round_trip(two_scans, tmp_path):
    a, b = two_scans
    table = write_table(tmp_path / "crops.csv", ROWS)
    out = StringIO()
    call_command("import_crops", str(table), "--dataset", "crops", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert len(result["imported"]) == 3 and result["failed"] == []
    assert CropBox.objects.get(series=a, side="R").status == "confirmed"
    assert CropBox.objects.get(series=b, side="L").source == "csv"
    versions = {(bx.series_id, bx.side): bx.version for bx in CropBox.objects.all()}
    again = StringIO()
    call_command("import_crops", str(table), "--dataset", "crops", stdout=again)  # the same table once more
    assert again.getvalue().startswith("0 box(es) imported, 3 already as the table says, 0 row(s) failed")
    assert {(bx.series_id, bx.side): bx.version for bx in CropBox.objects.all()} == versions

    out = StringIO()
    call_command("export_crops", "--dataset", "crops", "--format", "original", stdout=out)
    exported = list(csv.reader(StringIO(out.getvalue())))
    assert exported[0] == ORIGINAL_COLUMNS
    expected = sorted([[r[0], "L" if r[1] == "left" else r[1], *map(str, r[2:])] for r in ROWS])
    assert sorted(exported[1:]) == expected


@pytest.mark.django_db
def test_convention_matches_nibabel_slicing(two_scans, tmp_path):
    """The box of a row holds exactly the voxels ``get_fdata()[x_min:x_max, y_min:y_max, z_min:z_max]``."""
    a, _ = two_scans
    call_command("import_crops", str(write_table(tmp_path / "c.csv", ROWS[:1])), stdout=StringIO())
    box = CropBox.objects.get(series=a, side="R")
    img = nib.load(a.volume.file.path)
    data = np.asarray(img.dataobj)
    crop = data[30:54, 40:64, 5:25]
    # voxel (x, y, z) of the NIfTI is our (i, j, k): its LPS centre must fall inside the box, its neighbours not
    ijk = np.array([[30, 40, 5], [53, 63, 24]])
    lps = (np.diag([-1, -1, 1]) @ (img.affine[:3, :3] @ ijk.T + img.affine[:3, 3:4])).T
    lo, hi = np.asarray(box.lps_min), np.asarray(box.lps_max)
    assert np.all(lps >= lo - 1e-4) and np.all(lps <= hi + 1e-4)
    assert box.voxel_min == [30, 40, 5] and box.voxel_max == [53, 63, 24]
    ours = load_nifti(a.volume.file.path).array  # [k, j, i]
    np.testing.assert_array_equal(crop, ours[5:25, 40:64, 30:54].transpose(2, 1, 0))
    assert crop.shape == (24, 24, 20)


@pytest.mark.django_db
def test_bad_rows_are_reported_and_the_rest_imported(two_scans, tmp_path):
    a, _ = two_scans
    rows = ROWS[:1] + [
        ["missing.nii.gz", "R", 1, 2, 1, 2, 1, 2],
        ["scan_a.nii.gz", "X", 1, 2, 1, 2, 1, 2],
        ["scan_a.nii.gz", "L", 10, 5, 1, 2, 1, 2],
        ["scan_a.nii.gz", "L", 0, 500, 1, 2, 1, 2],
        ["scan_a.nii.gz", "L", "a", 5, 1, 2, 1, 2],
    ]
    out = StringIO()
    call_command("import_crops", str(write_table(tmp_path / "bad.csv", rows)), "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert [r["row"] for r in result["imported"]] == [2]
    reasons = {r["row"]: r["reason"] for r in result["failed"]}
    assert "no scan matches" in reasons[3] and "adrenal_LR" in reasons[4]
    assert "empty or outside" in reasons[5] and "outside the volume" in reasons[6] and "whole number" in reasons[7]
    assert a.boxes.count() == 1


def test_missing_columns_is_a_clear_error(tmp_path, db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="missing column"):
        call_command("import_crops", str(write_table(tmp_path / "x.csv", [], header=["filename_nii", "side"])))


@pytest.mark.django_db
def test_mm_exports(two_scans, tmp_path):
    from annotations.services.boxes import mark_not_covered

    a, b = two_scans
    call_command("import_crops", str(write_table(tmp_path / "c.csv", ROWS[:2])), stdout=StringIO())
    mark_not_covered(b, "adrenal region not covered: chest only")
    out = StringIO()
    call_command("export_crops", "--dataset", "crops", stdout=out)
    rows = list(csv.DictReader(StringIO(out.getvalue())))
    by_side = {(r["series_uid"], r["side"]): r for r in rows}
    r = by_side[(a.series_uid, "R")]
    box = CropBox.objects.get(series=a, side="R")
    assert [float(r[f"{c}_min_mm"]) for c in "xyz"] == pytest.approx(box.lps_min)
    assert [float(r[f"{c}_max_mm"]) for c in "xyz"] == pytest.approx(box.lps_max)
    assert r["status"] == "confirmed" and r["filename_nii"] == "scan_a.nii.gz" and r["i_min"] == "30"
    # the voxel range is inclusive at both ends (the README says so): the table's exclusive 54, 64, 25 less one
    assert [r[f"{a}_max"] for a in "ijk"] == ["53", "63", "24"]
    assert by_side[(b.series_uid, "")]["status"] == "not_covered"

    target = tmp_path / "boxes.json"
    call_command("export_crops", "--dataset", "crops", "--format", "json", "--output", str(target))
    doc = json.loads(target.read_text())
    entry = {s["id"]: s for s in doc["series"]}
    assert entry[a.pk]["boxes"]["L"]["lps_min"] == CropBox.objects.get(series=a, side="L").lps_min
    assert entry[b.pk]["status"] == "not_covered" and entry[b.pk]["boxes"] == {}


@pytest.mark.django_db
def test_mm_csv_opens_in_a_spreadsheet_as_written(two_scans, tmp_path):
    """Text a spreadsheet would take for a formula (a comment "-ve", "+ contrast", "=HYPERLINK(..)", a dataset
    named "@risk") is written with a leading apostrophe; negative coordinates stay numbers; the original table,
    read back by code, is verbatim and still imports."""
    from annotations.models import Dataset
    from annotations.services.findings import save_finding

    a, b = two_scans
    Dataset.objects.filter(name="crops").update(name="@risk")
    call_command("import_crops", str(write_table(tmp_path / "c.csv", ROWS[:2])), stdout=StringIO())
    save_finding(a, "R", comment="-ve for a mass, line\nbreak")
    save_finding(a, "L", comment='=HYPERLINK("http://evil.example","x")', lesion_centre_lps=[20.0, -180.0, 170.0],
                 lesion_diameter_mm=11.0)
    save_finding(b, "L", comment="+ contrast, résumé <b>bold</b>")
    out = StringIO()
    call_command("export_crops", "--dataset", "@risk", stdout=out)
    rows = list(csv.DictReader(StringIO(out.getvalue())))
    by_side = {(r["series_uid"], r["side"]): r for r in rows}
    assert by_side[(a.series_uid, "R")]["comment"] == "'-ve for a mass, line\nbreak"
    assert by_side[(a.series_uid, "L")]["comment"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert by_side[(b.series_uid, "L")]["comment"] == "'+ contrast, résumé <b>bold</b>"
    assert {r["dataset"] for r in rows} == {"'@risk"}
    left = by_side[(a.series_uid, "L")]
    assert float(left["lesion_y_mm"]) == -180.0 and left["lesion_y_mm"] == "-180.0"  # a number, not guarded
    assert float(left["y_min_mm"]) < 0 and not left["y_min_mm"].startswith("'")
    assert all(not v.startswith(("=", "+", "-", "@")) or float(v) == float(v) for r in rows for v in r.values())

    original = tmp_path / "orig.csv"
    call_command("export_crops", "--dataset", "@risk", "--format", "original", "--output", str(original))
    assert "'" not in original.read_text()


@pytest.mark.django_db
def test_the_table_exported_from_proposed_boxes_imports_as_already_there(two_scans, tmp_path):
    """Exporting the original table of proposed boxes (off voxel centres, as the proposer places them) and
    importing it back with --status proposed wrote a new version of every box, snapped to voxel centres, with the
    proposer's method and confidence replaced by "csv". A row that selects exactly the stored box's voxels is now
    "already as the table says"; a row that moves a face by a voxel is still imported."""
    from annotations.services.boxes import save_box

    a, _ = two_scans
    affine = np.array(a.volume.affine, float)
    centre = affine @ np.array([60.0, 50.0, 15.0, 1.0])
    save_box(a, "R", (centre[:3] - 23.3).tolist(), (centre[:3] + 21.7).tolist(), status="proposed", source="atlas",
             confidence=0.8)
    before = CropBox.objects.get(series=a, side="R")
    out = StringIO()
    call_command("export_crops", "--dataset", "crops", "--format", "original", stdout=out)
    table = tmp_path / "exported.csv"
    table.write_text(out.getvalue())
    again = StringIO()
    call_command("import_crops", str(table), "--dataset", "crops", "--status", "proposed", stdout=again)
    assert again.getvalue().startswith("0 box(es) imported, 1 already as the table says, 0 row(s) failed")
    after = CropBox.objects.get(series=a, side="R")
    assert (after.version, after.source, after.confidence, after.lps_min) == (before.version, "atlas", 0.8,
                                                                             before.lps_min)
    rows = list(csv.reader(StringIO(out.getvalue())))
    rows[1][ORIGINAL_COLUMNS.index("crop_x_max")] = str(int(rows[1][ORIGINAL_COLUMNS.index("crop_x_max")]) - 1)
    write_table(tmp_path / "moved.csv", rows[1:])
    moved = StringIO()
    call_command("import_crops", str(tmp_path / "moved.csv"), "--dataset", "crops", "--status", "proposed",
                 stdout=moved)
    assert moved.getvalue().startswith("1 box(es) imported, 0 already")
    assert CropBox.objects.get(series=a, side="R").source == "csv"


@pytest.mark.django_db
def test_export_to_a_path_that_cannot_be_written_names_it(two_scans, tmp_path):
    """export_crops --output to a path it could not write ended in a FileNotFoundError traceback; it is now a
    command error naming the path. A good export replaces the file whole."""
    from django.core.management import CommandError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CommandError, match=r"cannot write .*a-file/crops\.csv"):
        call_command("export_crops", "--dataset", "crops", "--output", str(blocker / "crops.csv"))
    target = tmp_path / "crops.csv"
    target.write_text("an earlier export that is much longer than the one that replaces it\n" * 100)
    call_command("export_crops", "--dataset", "crops", "--format", "original", "--output", str(target))
    assert target.read_text().splitlines()[0] == ",".join(ORIGINAL_COLUMNS)
    assert "earlier export" not in target.read_text()


@pytest.mark.django_db
def test_import_crops_names_a_file_it_cannot_read(tmp_path):
    """import_crops on a binary file answered "'utf-8' codec can't decode byte 0x8b in position 1" (no file named,
    no hint), and on a folder "... does not exist"; import_studies --labels said the same of a folder."""
    from django.core.management import CommandError

    gz = tmp_path / "crops.csv.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    with pytest.raises(CommandError, match=r"crops\.csv\.gz is not UTF-8 text \(save the crop table as CSV UTF-8\)"):
        call_command("import_crops", str(gz))
    with pytest.raises(CommandError, match=r"is a folder, not a crop table"):
        call_command("import_crops", str(tmp_path))
    with pytest.raises(CommandError, match=r"labels CSV .* is a folder, not a file"):
        call_command("import_studies", str(tmp_path), "--dataset", "x", "--labels", str(tmp_path), "--sync")
