"""Importing into the store: real series vs SimpleITK, pydicom's quirky files, a cohort with localizers and
two series per study, labels, pseudonymisation, idempotence, interruption and resume, the command's JSON."""
from __future__ import annotations

import csv
import json
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.management import call_command
from django.db import connection

from annotations.services.importer import apply_labels_csv, import_path, pseudonym_key
from annotations.models import Dataset, Label, Patient, Series, SourceInstance, Study, Volume
from inference.ml.geometry import voxel_to_lps
from inference.ml.volume import load_nifti
from tests.plugins.store import write_ct_series

pytestmark = pytest.mark.django_db


def volume_of(series: Series):
    from django.conf import settings

    return load_nifti(Path(settings.MEDIA_ROOT) / series.volume.file.name)


def assert_stored_as_simpleitk_reads(series: Series, img: sitk.Image) -> None:
    """The stored volume's voxels and LPS affine are those SimpleITK gives for the same file(s)."""
    vol = volume_of(series)
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(img))
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    affine[:3, 3] = img.GetOrigin()
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
    np.testing.assert_allclose(series.volume.affine, affine, atol=1e-4)


def statuses(report) -> dict[str, int]:
    return report.counts()


def test_real_series_imported_equals_simpleitk_and_reimport_adds_nothing(realct):
    ds = Dataset.objects.create(name="real")
    report = import_path(ds, realct["example_ct_dicom"])
    assert statuses(report) == {"imported": 1, "skipped": 0, "failed": 0}
    series = Series.objects.get()
    assert series.is_scan and series.uid_source == "folder+geometry" and series.instance_count == 20
    assert series.modality == "CT" and series.series_description == "CT Body 3.0" and series.kvp == 120
    assert series.transfer_syntax == "1.2.840.10008.1.2.4.90"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(realct["example_ct_dicom"])))
    img = reader.Execute()
    assert_stored_as_simpleitk_reads(series, img)
    assert series.volume.shape == [20, 512, 512]
    np.testing.assert_allclose(series.volume.spacing_mm, img.GetSpacing(), atol=1e-5)
    again = import_path(ds, realct["example_ct_dicom"])
    assert statuses(again) == {"imported": 0, "skipped": 1, "failed": 0}
    assert "already imported" in again.items.get().reason
    assert Series.objects.count() == 1 and SourceInstance.objects.count() == 20 and Volume.objects.count() == 1


def test_quirky_real_files_each_imported_or_reported(realct, tmp_path):
    names = ["eCT_Supplemental.dcm", "MR_truncated.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm",
             "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "no_meta.dcm", "ExplVR_BigEndNoMeta.dcm",
             "CT_small.dcm", "README.txt", "rtdose.dcm", "JPEG-LL.dcm"]
    for name in names:  # one folder per file, so every report item names its file's folder
        src = realct["pydicom_data"] / name
        if not src.exists():
            src = realct["pydicom_test_files"] / name
        (tmp_path / name[:-4]).mkdir()
        shutil.copy(src, tmp_path / name[:-4] / name)
    ds = Dataset.objects.create(name="quirks")
    report = import_path(ds, tmp_path)
    reasons = {}
    for item in report.items.all():
        reasons.setdefault(item.path.split("/")[0].split(" ")[0], []).append((item.status, item.reason))
    assert sorted(reasons) == sorted(n[:-4] for n in names)  # every file accounted for
    one = {k: v[0] for k, v in reasons.items()}
    assert one["README"] == ("skipped", "not a DICOM file (no DICOM preamble and no image tags)")
    assert one["no_meta"][0] == "skipped" and "not a DICOM file" in one["no_meta"][1]
    assert one["eCT_Supplemental"] == ("skipped", "too short for 2.5D images: 2 slice(s), need at least 3")
    assert one["CT_small"] == ("skipped", "too short for 2.5D images: 1 slice(s), need at least 3")
    # the MR_small encodings and the truncated copy share one SOP Instance UID: one is reported as MR, the others
    # as its copies
    mr = ("MR_small_bigendian", "MR_small_RLE", "MR_small_jpeg_ls_lossless", "MR_truncated")
    assert sorted(one[n][1].split(" (")[0] for n in mr) == ["duplicate of MR_small_RLE/MR_small_RLE.dcm"] * 3 + [
        "non-CT modality MR"]
    assert one["image_dfl"] == ("skipped", "secondary capture (derived screenshot, not a CT acquisition)")
    assert one["JPEG-LL"] == ("skipped", "secondary capture (derived screenshot, not a CT acquisition)")
    assert one["rtdose"] == ("skipped", "not an image series: RT dose")
    assert one["ExplVR_BigEndNoMeta"] == ("skipped", "not an image series: modality RTPLAN")
    assert Series.objects.count() == 0 and report.items.filter(status="failed").count() == 0


def test_truncated_ct_slice_fails_its_series_only(tmp_path):
    good, _ = write_ct_series(tmp_path / "good", n=4)
    bad, _ = write_ct_series(tmp_path / "bad", n=4, seed=5)
    victim = sorted(bad.iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:-64])
    report = import_path(Dataset.objects.create(name="t"), tmp_path)
    assert statuses(report) == {"imported": 1, "skipped": 0, "failed": 1}
    failed = report.items.get(status="failed")
    assert failed.path.startswith("bad") and "pixel data truncated" in failed.reason


def test_cohort_counts_labels_exclusions_and_pseudonyms(store_cohort):
    root, truth = store_cohort
    ds = Dataset.objects.create(name="cohort")
    report = import_path(ds, root)
    c = statuses(report)
    # per patient: a thin and a thick series imported, a localizer and a NOTES.txt skipped; ground_truth.csv skipped
    assert c == {"imported": 8, "skipped": 4 + 4 + 1, "failed": 0}
    assert report.items.filter(reason="localizer/scout image").count() == 4
    assert Patient.objects.filter(dataset=ds).count() == 4 and Study.objects.count() == 4
    assert Series.objects.filter(is_scan=True).count() == 8
    for folder, t in truth.items():
        patient = Patient.objects.get(source_key=pseudonym_key(t["patient_id"]))
        assert patient.label == t["label"] and patient.pseudo_id.startswith("P")
        assert patient.labels.get().source == Label.Source.FOLDER
    # the source PatientID (and name) is stored nowhere
    with connection.cursor() as cur:
        for table in ("annotations_patient", "annotations_study", "annotations_series", "annotations_sourceinstance",
                      "annotations_importitem", "annotations_label"):
            cur.execute(f"SELECT * FROM {table}")
            dump = repr(cur.fetchall())
            assert "HOSP00" not in dump and "Name^" not in dump, table
    # switching the dataset to the 'thinnest' rule keeps one scan per study: the 2 mm series
    from annotations.services.importer import apply_series_rule

    ds.series_rule = Dataset.SeriesRule.THINNEST
    ds.save()
    apply_series_rule(ds)
    scans = Series.objects.filter(is_scan=True)
    assert scans.count() == 4 and set(scans.values_list("series_description", flat=True)) == {"Abdomen 2mm"}
    assert "thinnest" in Series.objects.filter(is_scan=False).first().extra["not_scan_reason"]


def test_thinnest_rule_at_import_and_labels_csv_override(store_cohort, tmp_path):
    root, truth = store_cohort
    ds = Dataset.objects.create(name="thin", series_rule="thinnest")
    first = next(iter(truth))
    some_series = None
    labels = tmp_path / "labels.csv"
    report = import_path(ds, root)
    assert Series.objects.filter(is_scan=True).count() == 4
    some_series = Series.objects.filter(is_scan=True).order_by("pk").last()
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "series_uid", "label"])
        w.writerow([truth[first]["patient_id"], "", "abnormal" if truth[first]["label"] == "normal" else "normal"])
        w.writerow(["", some_series.series_uid, "abnormal"])
        w.writerow(["nobody", "", "normal"])
        w.writerow([truth[first]["patient_id"], "", "maybe"])
    counts = apply_labels_csv(ds, labels, report=report)
    assert counts == {"applied": 2, "unmatched": 1, "invalid": 1}
    patient = Patient.objects.get(source_key=pseudonym_key(truth[first]["patient_id"]))
    assert patient.label != truth[first]["label"]
    assert patient.labels.count() == 2 and patient.labels.get(is_current=False).source == "folder"
    some_series.refresh_from_db()
    assert some_series.label == "abnormal" and some_series.labels.get().source == "csv"
    assert report.items.filter(reason__contains="nothing in the dataset matches").count() == 1
    assert report.items.filter(reason__contains="is not normal/abnormal").count() == 1
    # a reimport with the CSV keeps the CSV labels (folder labels never override them)
    import_path(ds, root, labels_csv=labels)
    patient.refresh_from_db()
    assert patient.label != truth[first]["label"] and patient.labels.count() == 2


def test_a_labels_file_that_cannot_be_read_fails_alone_and_the_scans_stay_imported(store_cohort, tmp_path):
    """The labels step of an import never fails the import: its scans are kept (and go on to box proposals),
    the file is one failed item naming the problem, and nothing is labelled from it."""
    root, _ = store_cohort
    ds = Dataset.objects.create(name="bad-csv")
    bad = tmp_path / "labels.csv"
    bad.write_bytes(b"\xff\xfe\x00\x01garbage")
    report = import_path(ds, root, labels_csv=bad)
    assert report.counts()["imported"] == 8 and Series.objects.filter(study__patient__dataset=ds).count() >= 8
    failed = report.items.get(path="labels.csv:0")
    assert failed.status == "failed" and "is not UTF-8 text" in failed.reason
    assert not Label.objects.filter(patient__dataset=ds, source="csv").exists()


def test_a_report_item_keeps_its_whole_reason(store_cohort, tmp_path):
    """Reasons are no longer cut at 500 characters (a scan's notes can run longer); a runaway one stops at
    MAX_REASON_CHARS."""
    from annotations.models.imports import MAX_REASON_CHARS

    root, _ = store_cohort
    ds = Dataset.objects.create(name="long-reasons")
    labels = tmp_path / "labels.csv"
    labels.write_text(f"patient,label\nP1,{'x' * 600}\nP2,{'y' * 9000}\n")
    report = import_path(ds, root, labels_csv=labels)
    reasons = [i.reason for i in report.items.filter(path__startswith="labels.csv:")]
    assert len(reasons[0]) > 600 and reasons[0].endswith("is not normal/abnormal")
    assert len(reasons[1]) == MAX_REASON_CHARS


def test_a_folder_without_files_says_there_was_nothing_to_import(tmp_path):
    ds = Dataset.objects.create(name="empty")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    report = import_path(ds, tmp_path / "empty")
    assert [(i.status, i.reason) for i in report.items.all()] == [("skipped", "no files found: nothing to import")]


@pytest.mark.django_db(transaction=True)  # the deleted dataset's rows fail as they would outside a test
def test_an_import_whose_dataset_is_deleted_meanwhile_leaves_no_ct_behind(tmp_path, settings):
    """A dataset deleted while its import ran (the admin deleting it mid-job): the scan's CT was written to
    volumes/d<id>/ before its rows, whose write then failed; the file stayed with no row holding it, a patient's
    CT that nothing lists and no deletion reaches. It goes with the failed write; a CT a row holds stays."""
    settings.MEDIA_ROOT = media = tmp_path / "media"
    kept = Dataset.objects.create(name="kept")
    write_ct_series(tmp_path / "in" / "P1" / "s", n=6)
    import_path(kept, tmp_path / "in")
    held = [p.relative_to(media).as_posix() for p in media.rglob("*.nii.gz")]
    assert held == [Volume.objects.get().file.name]
    ds = Dataset.objects.create(name="gone")

    def admin_deletes_the_dataset(percent: float, message: str = "") -> None:
        Dataset.objects.filter(pk=ds.pk).delete()

    with pytest.raises(Exception, match="FOREIGN KEY|foreign key"):
        import_path(ds, tmp_path / "in", progress=admin_deletes_the_dataset)
    assert [p.relative_to(media).as_posix() for p in media.rglob("*.nii.gz")] == held


def test_import_interrupted_then_rerun_is_complete_without_duplicates(store_cohort):
    root, _ = store_cohort
    ds = Dataset.objects.create(name="resume")
    calls = {"series": 0}

    def dying(percent: float, message: str = "") -> None:
        if message.startswith("series "):
            calls["series"] += 1
            if calls["series"] == 5:
                raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        import_path(ds, root, progress=dying)
    partial = Series.objects.count()
    assert 0 < partial < 8
    report = import_path(ds, root)
    assert statuses(report)["imported"] == 8 - partial
    assert Series.objects.count() == 8 and Volume.objects.count() == 8
    n_instances = sum(s.instance_count for s in Series.objects.all())
    assert SourceInstance.objects.count() == n_instances == 4 * (8 + 3)
    # resuming the same report (a re-delivered job) keeps one 'imported' item per series
    import_path(ds, root, report=report)
    assert report.items.filter(status="imported").count() == 8 - partial
    assert Series.objects.count() == 8


def test_nifti_entry_point_with_labels_csv(realct, tmp_path):
    src = tmp_path / "nifti"
    src.mkdir()
    shutil.copy(realct["example_ct_sm"], src / "case7.nii.gz")
    (tmp_path / "labels.csv").write_text("patient,label\ncase7,abnormal\n")
    ds = Dataset.objects.create(name="nifti")
    report = import_path(ds, src, labels_csv=tmp_path / "labels.csv")
    assert statuses(report) == {"imported": 1, "skipped": 0, "failed": 0}
    series = Series.objects.get()
    original = load_nifti(realct["example_ct_sm"], dtype=None)  # stored RAS: put on the store's LPS axes
    vol = volume_of(series)
    assert vol.shape == original.shape and np.diag(vol.affine)[:3].tolist() == [3.0, 3.0, 3.0]
    assert np.array_equal(vol.array, np.rint(original.array[:, ::-1, ::-1]).astype(np.int16))
    np.testing.assert_allclose(voxel_to_lps(vol.affine, [0, 0, 0]), voxel_to_lps(original.affine, [121, 100, 0]))
    assert series.label == "abnormal" and series.uid_source == "nifti"
    assert statuses(import_path(ds, src)) == {"imported": 0, "skipped": 1, "failed": 0}


def test_nifti_files_of_the_same_name_in_patient_folders_are_different_patients(realct, tmp_path):
    """TotalSegmentator's dataset layout, <patient>/ct.nii.gz: the folder is the patient (the file name is the
    same for all); files with names of their own stay one patient each, and a labels CSV names either."""
    import nibabel as nib

    src = tmp_path / "cohort"
    img = nib.load(realct["example_ct_sm"])
    data = np.asarray(img.dataobj)
    for n, folder in enumerate(("s0001", "s0002")):
        (src / folder).mkdir(parents=True)
        changed = data.copy()
        changed[0, 0, 0] = n  # another file's content
        nib.save(nib.Nifti1Image(changed, img.affine, img.header), src / folder / "ct.nii.gz")
    shutil.copy(realct["example_ct_sm"], src / "case9.nii.gz")
    (tmp_path / "labels.csv").write_text("patient,label\ns0001,abnormal\ns0002,normal\ncase9,abnormal\n")
    ds = Dataset.objects.create(name="folders")
    report = import_path(ds, src, labels_csv=tmp_path / "labels.csv")
    assert statuses(report) == {"imported": 3, "skipped": 0, "failed": 0}
    assert Patient.objects.filter(dataset=ds).count() == 3 and Study.objects.filter(patient__dataset=ds).count() == 3
    assert sorted(s.label for s in Series.objects.filter(study__patient__dataset=ds)) == ["abnormal", "abnormal",
                                                                                         "normal"]
    # the folder's path, not its last name: a/s1 and b/s1 are two patients
    deep = tmp_path / "deep"
    for n, folder in enumerate(("a/s1", "b/s1")):
        (deep / folder).mkdir(parents=True)
        changed = data.copy()
        changed[0, 0, 1] = 10 + n
        nib.save(nib.Nifti1Image(changed, img.affine, img.header), deep / folder / "ct.nii.gz")
    other = Dataset.objects.create(name="deep")
    assert statuses(import_path(other, deep)) == {"imported": 2, "skipped": 0, "failed": 0}
    assert Patient.objects.filter(dataset=other).count() == 2


def test_segmentation_masks_label_maps_and_an_mr_beside_a_ct_are_refused_as_not_ct(realct, tmp_path):
    """A NIfTI names no modality: TotalSegmentator's output beside its CT (its ``segmentations/`` masks, its label
    map) and its MR example were each stored as a CT scan of the patient (HU 0 and 1, or MR intensities), listed
    in the worklist, given boxes and images. Each is a failed item naming it not CT, with what it likely is; the CT
    beside them is imported as alone, equal to SimpleITK's reading of the same file."""
    seg_dir = Path(realct["example_ct"]).parent
    patient = tmp_path / "import" / "s0001"
    (patient / "segmentations").mkdir(parents=True)
    shutil.copy(realct["example_ct_sm"], patient / "ct.nii.gz")
    for name in ("adrenal_gland_left.nii.gz", "adrenal_gland_right.nii.gz", "liver.nii.gz"):
        shutil.copy(realct["seg_fast"] / name, patient / "segmentations" / name)
    shutil.copy(seg_dir / "example_seg_fast.nii.gz", patient / "example_seg_fast.nii.gz")
    shutil.copy(seg_dir / "example_mr_sm.nii.gz", patient / "example_mr_sm.nii.gz")
    ds = Dataset.objects.create(name="totalseg output")
    report = import_path(ds, tmp_path / "import")
    assert statuses(report) == {"imported": 1, "skipped": 0, "failed": 5}
    reasons = {Path(i.path).name: i.reason for i in report.items.filter(status="failed")}
    for name in ("adrenal_gland_left.nii.gz", "adrenal_gland_right.nii.gz", "liver.nii.gz", "example_seg_fast.nii.gz"):
        assert reasons[name].startswith("not CT: no air in Hounsfield units"), reasons[name]
        assert "a segmentation mask or label map" in reasons[name], reasons[name]
    assert "another modality" in reasons["example_mr_sm.nii.gz"], reasons["example_mr_sm.nii.gz"]
    series = Series.objects.get(study__patient__dataset=ds)
    assert_stored_as_simpleitk_reads(series, sitk.DICOMOrient(sitk.ReadImage(str(realct["example_ct_sm"])), "LPS"))


@pytest.mark.django_db(transaction=True)  # the job runner closes and reopens connections
def test_command_json_shape(store_cohort):
    root, truth = store_cohort
    out = StringIO()
    call_command("import_studies", str(root), "--dataset", "cmd", "--labels", str(root / "ground_truth.csv"),
                 "--json", "--sync", stdout=out, stderr=StringIO())
    doc = json.loads(out.getvalue())
    assert set(doc) == {"dataset", "series", "skipped", "failed"} and doc["dataset"] == "cmd"
    assert len(doc["series"]) == 8 and doc["failed"] == []
    s = doc["series"][0]
    assert set(s) == {"id", "series_uid", "study_uid", "patient", "label", "volume_path", "shape", "spacing_mm",
                      "notes"}
    assert Path(s["volume_path"]).is_file() and len(s["shape"]) == 3 and s["label"] in ("normal", "abnormal")
    assert {x["reason"] for x in doc["skipped"]} >= {"localizer/scout image"}
    assert all(set(x) == {"path", "reason"} for x in doc["skipped"])
    labels = {x["patient"]: x["label"] for x in doc["series"]}
    expected = {Patient.objects.get(source_key=pseudonym_key(t["patient_id"])).pseudo_id: t["label"]
                for t in truth.values()}
    assert labels == expected


def test_conflicting_folder_label_is_reported_not_applied(tmp_path):
    ds = Dataset.objects.create(name="conflict")
    write_ct_series(tmp_path / "a" / "normal" / "p1" / "s1", n=4, patient_id="X1")
    write_ct_series(tmp_path / "b" / "abnormal" / "p1" / "s2", n=4, patient_id="X1", seed=4)
    import_path(ds, tmp_path / "a")
    report = import_path(ds, tmp_path / "b")
    patient = Patient.objects.get()
    assert patient.label == "normal" and patient.labels.count() == 1
    assert "folder says abnormal, patient label stays normal (folder)" in report.items.get(status="imported").reason


def test_labels_csv_by_patient_folder_name(store_cohort, tmp_path):
    root, truth = store_cohort
    ds = Dataset.objects.create(name="by-folder")
    csv_path = tmp_path / "by_folder.csv"
    csv_path.write_text("patient,label\n" + "".join(f"{folder},abnormal\n" for folder in truth))
    report = import_path(ds, root, labels_csv=csv_path)
    assert not report.items.filter(reason__contains="nothing in the dataset matches").exists()
    assert all(p.label == "abnormal" for p in Patient.objects.filter(dataset=ds))


def test_labels_csv_of_a_second_import_labels_its_own_patient_not_an_earlier_namesake(tmp_path):
    """A second batch whose patient folders reuse the first batch's names ('p1'): its labels CSV labels the
    patient it imports, not the earlier patient of that name too. Before, the row 'p1,abnormal,L' matched both
    by folder and silently turned the first batch's normal patient abnormal (a test patient of a run)."""
    ds = Dataset.objects.create(name="batches")
    write_ct_series(tmp_path / "a" / "normal" / "p1" / "s1", n=4, patient_id="X1")
    write_ct_series(tmp_path / "b" / "abnormal" / "p1" / "s2", n=4, patient_id="X2", seed=4)
    import_path(ds, tmp_path / "a")
    first = Patient.objects.get(dataset=ds)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("patient,label,side\np1,abnormal,L\n")
    report = import_path(ds, tmp_path / "b", labels_csv=csv_path)
    second = Patient.objects.exclude(pk=first.pk).get(dataset=ds)
    assert (first.label, first.labels.count()) == ("normal", 1)
    lab = Label.objects.get(patient=second, is_current=True)
    assert (lab.value, lab.side, lab.source) == ("abnormal", "L", "csv")
    assert not report.items.filter(status="failed").exists()
    # outside an import (or when none of the namesakes is the import's) the name is ambiguous: refused, named
    csv_path.write_text("patient,label\np1,normal\n")
    assert apply_labels_csv(ds, csv_path)["invalid"] == 1
    assert Label.objects.get(patient=second, is_current=True).value == "abnormal"
    write_ct_series(tmp_path / "c" / "normal" / "p2" / "s3", n=4, patient_id="X3", seed=7)
    report = import_path(ds, tmp_path / "c", labels_csv=csv_path)  # an import of neither p1
    reason = report.items.get(status="failed").reason
    assert "matches 2 patients" in reason and first.pseudo_id in reason and second.pseudo_id in reason
    assert Label.objects.get(patient=second, is_current=True).value == "abnormal"
    # re-importing the first batch with its CSV labels that batch's p1
    csv_path.write_text("patient,label\np1,abnormal\n")
    report = import_path(ds, tmp_path / "a", labels_csv=csv_path)
    assert Patient.objects.get(pk=first.pk).label == "abnormal" and not report.items.filter(status="failed").exists()


def test_labels_csv_side_column_gives_per_gland_labels(store_cohort, tmp_path):
    root, truth = store_cohort  # case00 normal, case01 abnormal, case02 normal, case03 abnormal
    ds = Dataset.objects.create(name="sides")
    csv_path = tmp_path / "sides.csv"
    csv_path.write_text("patient,label,side\ncase00,normal,none\ncase01,abnormal,l\ncase02,normal,L\n"
                        "case03,abnormal,top\n")
    report = import_path(ds, root, labels_csv=csv_path)
    sides = sorted(Label.objects.filter(patient__dataset=ds, is_current=True, source="csv").values_list("value",
                                                                                                      "side"))
    assert sides == [("abnormal", "L"), ("normal", "none")]
    reasons = list(report.items.filter(status="failed").values_list("reason", flat=True))
    assert any("side 'L'" in r and "normal scan cannot have an abnormal side" in r for r in reasons), reasons
    assert any("side 'top'" in r and "side must be R, L, RL or none" in r for r in reasons), reasons
    # the same label with another side is a new current label; the old one stays as history
    csv_path.write_text("patient,label,side\ncase01,abnormal,RL\n")
    apply_labels_csv(ds, csv_path)
    lab = Label.objects.get(patient__dataset=ds, is_current=True, source="csv", value="abnormal")
    assert lab.side == "RL" and Label.objects.filter(patient=lab.patient, side="L", is_current=False).exists()


def test_a_labels_csv_is_bounded_before_its_fields_are_kept(tmp_path):
    """The reader keeps every field of every row: a 60 MB labels CSV of three lines of 20 million commas cost
    500 MB (and was read in the admin's upload request). A file over 16 MB, a header of more than 64 columns or a
    line of more than 64 fields is refused naming it; an ordinary table is read as before."""
    from annotations.services.importer import LabelsCsvInvalid, read_labels_csv

    commas = tmp_path / "commas.csv"
    commas.write_text("patient,label\n" + "P1,normal" + "," * 2_000_000 + "\n")
    with pytest.raises(LabelsCsvInvalid, match=r"commas.csv line 2 has 2000002 fields \(limit 64\)"):
        read_labels_csv(commas)
    wide = tmp_path / "wide.csv"
    wide.write_text("patient,label," + ",".join(f"c{i}" for i in range(100)) + "\nP1,normal\n")
    with pytest.raises(LabelsCsvInvalid, match=r"has 102 columns \(limit 64\)"):
        read_labels_csv(wide)
    big = tmp_path / "big.csv"
    big.write_text("patient,label\n" + "P0000001,normal\n" * 1_100_000)
    with pytest.raises(LabelsCsvInvalid, match="is 17 MB, over the limit of 16 MB"):
        read_labels_csv(big)
    fine = tmp_path / "fine.csv"
    fine.write_text("patient,label,side,note\nP1,abnormal,R,\nP2,normal,,x,extra\n")
    fields, rows = read_labels_csv(fine)
    assert set(fields) == {"patient", "label", "side", "note"} and [r["patient"] for _, r in rows] == ["P1", "P2"]


@pytest.mark.django_db
def test_command_no_wait_json_prints_the_queued_job(tmp_path):
    """``import_studies PATH --dataset X --no-wait --json`` printed nothing on standard output (the queued job's
    number went to standard error as text), so a script asking for JSON read an empty document."""
    from adrenal_site.jobs.models import Job

    out = StringIO()
    call_command("import_studies", str(tmp_path), "--dataset", "later", "--no-wait", "--json", stdout=out,
                 stderr=StringIO())
    doc = json.loads(out.getvalue())
    job = Job.objects.get(pk=doc["job"])
    assert doc == {"dataset": "later", "job": job.pk, "status": "queued"} and job.kind == "import"



def test_a_patient_folder_imported_on_its_own_keeps_its_layout(tmp_path):
    """Importing ``abnormal/p1`` itself (or a folder inside it) reads the layout the folders above the root give:
    the patient gets the folder's label, and a labels CSV naming the folder matches it. Before, the layout was read
    from the paths inside the root only, so the patient stayed unlabelled and the row was 'nothing matches'."""
    ds = Dataset.objects.create(name="one-folder")
    write_ct_series(tmp_path / "abnormal" / "p1" / "s1", n=4, patient_id="X1")
    write_ct_series(tmp_path / "normal" / "p2" / "study" / "s2", n=4, patient_id="X2", seed=4)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("patient,label,side\np1,abnormal,R\n")
    report = import_path(ds, tmp_path / "abnormal" / "p1", labels_csv=csv_path)
    assert not report.items.exclude(status="imported").exists(), list(report.items.values_list("reason", flat=True))
    p1 = Patient.objects.get(dataset=ds, source_key=pseudonym_key("X1"))
    lab = Label.objects.get(patient=p1, is_current=True)
    assert (lab.value, lab.side, lab.source) == ("abnormal", "R", "csv")
    import_path(ds, tmp_path / "normal" / "p2" / "study")
    assert Patient.objects.get(dataset=ds, source_key=pseudonym_key("X2")).label == "normal"
    # a folder inside the patient folder was the root: the row names the patient folder above it
    csv_path.write_text("patient,label\np2,normal\n")
    assert apply_labels_csv(ds, csv_path) == {"applied": 1, "unmatched": 0, "invalid": 0}
