"""Store pages and API: counts, membership, zip upload safety (nothing changes on refusal), the import job and
its report, label editing with history, series with volume info."""
from __future__ import annotations

import html
import io
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import run_job
from annotations.services.importer import import_path
from annotations.models import Dataset, ImportItem, ImportReport, Label, Patient, Series
from annotations.tasks import import_studies
from tests.plugins.store import make_store_cohort


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def zip_of_folder(root: Path) -> bytes:
    return zip_bytes({str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})


def rows(response) -> list:
    data = response.json()
    return data["results"] if isinstance(data, dict) and "results" in data else data


def state() -> tuple:
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    files = sorted(str(p) for p in uploads.rglob("*")) if uploads.exists() else []
    return (Job.objects.count(), ImportReport.objects.count(), Series.objects.count(), Patient.objects.count(), files)


@pytest.fixture
def imported(db, tmp_path, users):
    root = tmp_path / "cohort"
    make_store_cohort(root, patients=2)
    ds = Dataset.objects.create(name="members-only")
    import_path(ds, root)
    other = Dataset.objects.create(name="secret-set")
    ds.members.add(users["clinician"])
    return ds, other


def test_dataset_list_counts_and_membership(client_as, imported):
    ds, other = imported
    page = client_as("clinician").get(reverse("store-datasets")).content.decode()
    assert "members-only" in page and "secret-set" not in page
    assert '<td data-count="patients">2</td>' in page and '<td data-count="scans">4</td>' in page
    assert '<td data-count="normal">1</td>' in page and '<td data-count="abnormal">1</td>' in page
    assert client_as("clinician").get(reverse("store-dataset", args=[other.pk])).status_code == 404
    assert client_as("clinician").get(reverse("store-dataset-import", args=[ds.pk])).status_code == 403
    admin_page = client_as("admin").get(reverse("store-datasets")).content.decode()
    assert "secret-set" in admin_page and "New dataset" in admin_page


def test_admin_creates_a_dataset_with_members(client_as, users, db):
    c = client_as("admin")
    r = c.post(reverse("store-dataset-new"), {"name": "new one", "description": "d", "series_rule": "thinnest",
                                              "members": [users["clinician"].pk]})
    ds = Dataset.objects.get(name="new one")
    assert r.status_code == 302 and ds.series_rule == "thinnest" and list(ds.members.all()) == [users["clinician"]]


def test_zip_with_dotdot_entries_is_refused_and_nothing_changes(client_as, imported):
    ds, _ = imported
    c = client_as("admin")
    before = state()
    for entries, message in [
        ({"ok/a.dcm": b"x", "../evil.dcm": b"x"}, "absolute path or &#x27;..&#x27;"),
        ({"/etc/passwd": b"x"}, "absolute path"),
    ]:
        upload = io.BytesIO(zip_bytes(entries))
        upload.name = "bad.zip"
        r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
        assert r.status_code == 400 and message in r.content.decode()
    assert state() == before


def test_non_zip_and_single_dicom_uploads_are_refused(client_as, imported, tmp_path):
    ds, _ = imported
    c = client_as("admin")
    before = state()
    upload = io.BytesIO(b"just some text, not an archive")
    upload.name = "notes.txt"
    r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    assert r.status_code == 400 and "notes.txt: the upload is not a zip archive" in r.content.decode()
    dcm = next((tmp_path / "cohort").rglob("*.dcm"))
    upload = io.BytesIO(dcm.read_bytes())
    upload.name = "one.dcm"
    r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    assert r.status_code == 400 and "a single DICOM file" in r.content.decode()
    for entries in ({}, {"empty/": b"", "empty/nothing.dcm": b""}):  # no file with content: nothing to import
        upload = io.BytesIO(zip_bytes(entries))
        upload.name = "empty.zip"
        r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
        assert r.status_code == 400 and "the zip holds no files" in r.content.decode()
    assert state() == before


BAD_LABELS = [  # one of each way a labels file is no labels table, and what the refusal names
    (b"\xff\xfe\x00\x01garbage", "is not UTF-8 text"),
    (b"patient,label\nP1,\"" + b"x" * 200_000 + b"\"\n", "is malformed at line 2"),
    (b"name,outcome\nP1,abnormal\n", "needs a 'label' column"),
]


def test_an_upload_with_a_labels_file_that_is_no_labels_table_is_refused(client_as, imported):
    """Checked before anything is queued, so a bad CSV never leaves scans imported but unprocessed."""
    ds, _ = imported
    c = client_as("admin")
    before = state()
    for content, message in BAD_LABELS:
        upload, labels = io.BytesIO(zip_bytes({"a/b.bin": b"0"})), io.BytesIO(content)
        upload.name, labels.name = "x.zip", "labels.csv"
        r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload, "labels": labels})
        assert r.status_code == 400 and message.replace("'", "&#x27;") in r.content.decode(), message
    assert state() == before


def test_api_and_command_refuse_a_labels_file_that_is_no_labels_table(client_as, db, settings, tmp_path):
    from django.core.management import CommandError, call_command

    root = tmp_path / "imports"
    (root / "study").mkdir(parents=True)
    settings.ADRENAL_IMPORT_ROOTS = [str(root)]
    ds = Dataset.objects.create(name="bad-labels")
    for n, (content, message) in enumerate(BAD_LABELS):
        bad = root / f"labels{n}.csv"
        bad.write_bytes(content)
        r = client_as("admin").post(f"/api/datasets/{ds.pk}/imports/", {"path": "study", "labels_csv": str(bad)},
                                    content_type="application/json")
        assert r.status_code == 400 and message in r.json()["labels_csv"][0], message
        with pytest.raises(CommandError, match=message):
            call_command("import_studies", str(root / "study"), "--dataset", ds.name, "--labels", str(bad), "--sync")
    assert not ImportReport.objects.filter(dataset=ds).exists()


def test_oversized_upload_is_refused(client_as, imported, settings):
    ds, _ = imported
    settings.ADRENAL_MAX_UPLOAD_BYTES = 1000
    before = state()
    upload = io.BytesIO(zip_bytes({"a/b.bin": b"0" * 5000}))
    upload.name = "big.zip"
    r = client_as("admin").post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    assert r.status_code == 413 and "larger than the limit of 0 MB" in r.content.decode()
    assert state() == before


def test_upload_page_still_checks_csrf(imported, users):
    from django.test import Client

    ds, _ = imported
    c = Client(enforce_csrf_checks=True)
    c.force_login(users["admin"])
    upload = io.BytesIO(zip_bytes({"a/b.bin": b"0"}))
    upload.name = "x.zip"
    assert c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_zip_upload_imports_as_a_job_and_reports(client_as, users, tmp_path, django_capture_on_commit_callbacks):
    root = tmp_path / "up"
    make_store_cohort(root, patients=2)
    ds = Dataset.objects.create(name="upload")
    upload = io.BytesIO(zip_of_folder(root))
    upload.name = "cohort.zip"
    c = client_as("admin")
    r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    assert r.status_code == 302
    report = ImportReport.objects.get()
    assert r["Location"] == reverse("store-import-report", args=[report.pk])
    job = report.job
    assert job.kind == "import" and job.queue == "cpu" and job.params["zip_path"].endswith("upload.zip")
    page = c.get(r["Location"]).content.decode()
    assert f'data-job-id="{job.pk}"' in page and "store/import_report.js" in page
    run_job(import_studies.job_fn, job.pk)  # what the cpu worker runs
    job.refresh_from_db()
    assert job.status == "succeeded" and job.result["imported"] == 4
    assert not Path(job.params["zip_path"]).exists()  # the upload is removed once imported
    page = c.get(r["Location"]).content.decode()
    assert "localizer/scout image" in page and "not a DICOM file" in page
    assert Series.objects.filter(study__patient__dataset=ds, is_scan=True).count() == 4
    # the same zip again adds nothing
    upload = io.BytesIO(zip_of_folder(root))
    upload.name = "cohort.zip"
    c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    again = ImportReport.objects.exclude(pk=report.pk).get()
    run_job(import_studies.job_fn, again.job.pk)
    assert again.counts()["imported"] == 0 and Series.objects.count() == 4
    scans = sorted(Series.objects.filter(is_scan=True).values_list("pk", flat=True))
    proposing = Job.objects.filter(kind="propose_crops")
    assert proposing.count() == 1 and proposing.get().params["series_ids"] == scans  # still queued: not twice
    # an import that stopped before its scans got boxes (its proposal job lost) is finished by importing again
    proposing.update(status="failed")
    upload = io.BytesIO(zip_of_folder(root))
    upload.name = "cohort.zip"
    c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    third = ImportReport.objects.exclude(pk__in=[report.pk, again.pk]).get()
    run_job(import_studies.job_fn, third.job.pk)
    assert third.counts()["imported"] == 0
    assert Job.objects.get(kind="propose_crops", status="queued").params["series_ids"] == scans


def test_label_editing_with_history(client_as, imported, users):
    ds, _ = imported
    patient = Patient.objects.filter(dataset=ds).first()
    original = patient.label
    url = reverse("store-patient-labels", args=[patient.pk])
    assert client_as("clinician").post(url, {"value": "abnormal"}).status_code == 403
    c = client_as("admin")
    new = "abnormal" if original == "normal" else "normal"
    assert c.post(url, {"value": new, "note": "re-read by radiologist"}).status_code == 302
    series = Series.objects.filter(study__patient=patient).first()
    c.post(url, {"value": "abnormal", "series": series.pk})
    patient.refresh_from_db()
    assert patient.label == new and series.label == "abnormal"
    page = c.get(url).content.decode()
    assert "re-read by radiologist" in page and "replaced" in page and "folder" in page
    c.post(url, {"value": "inherit", "series": series.pk})
    assert series.label == new
    assert Label.objects.filter(patient=patient).count() == 3


def test_label_page_sets_the_side_checked_as_the_api_checks_it(client_as, imported):
    """The label page's side selector (none / right / left / both) stores ``Label.side`` as the API's ``side``
    does; the same contradictions are refused with the same words, and nothing is stored then."""
    ds, _ = imported
    patient = Patient.objects.filter(dataset=ds).first()
    url = reverse("store-patient-labels", args=[patient.pk])
    c = client_as("admin")
    page = c.get(url).content.decode()
    for v, name in (("", "side not known"), ("none", "none"), ("R", "right"), ("L", "left"), ("RL", "both")):
        assert f'<option value="{v}">{name}</option>' in page
    assert c.post(url, {"value": "abnormal", "side": "RL", "note": "both glands"}).status_code == 302
    label = Label.objects.get(patient=patient, series=None, is_current=True)
    assert (label.value, label.side, label.source) == ("abnormal", "RL", "ui")
    page = c.get(url).content.decode()
    assert 'abnormal side: both' in page and '<td data-side="RL">both</td>' in page
    assert '<option value="RL" selected>both</option>' in page
    series = Series.objects.filter(study__patient=patient).first()
    assert c.post(url, {"value": "normal", "side": "none", "series": series.pk}).status_code == 302
    assert Label.objects.get(series=series, is_current=True).side == "none"
    count = Label.objects.count()
    api = f"/api/patients/{patient.pk}/labels/"
    for bad in ({"value": "normal", "side": "R"}, {"value": "abnormal", "side": "none"},
                {"value": "abnormal", "side": "left"}):
        r = c.post(url, bad)
        assert r.status_code == 400, bad
        shown = r.content.decode()
        if bad["side"] != "left":  # an unknown choice is the form's own refusal; the others are the one check's
            message = c.post(api, bad, content_type="application/json").json()["side"][0]
            assert html.escape(message) in shown, (bad, message)
        else:
            assert c.post(api, bad, content_type="application/json").status_code == 400
    # every refusal names its own field, not "choose normal or abnormal"
    for bad, message in (({"value": "normal", "series": "abc"}, "series: Enter a whole number."),
                         ({"value": "normal", "series": "99999999999999999999"}, "series: Ensure this value"),
                         ({"value": "normal", "note": "x" * 301}, "note: Ensure this value has at most 300"),
                         ({"value": "maybe"}, "value: Select a valid choice.")):
        r = c.post(url, bad)
        assert r.status_code == 400 and html.escape(message) in r.content.decode(), (bad, message)
    assert Label.objects.count() == count
    label.refresh_from_db()
    assert label.is_current and label.side == "RL"


def test_api_datasets_patients_series_labels_imports(client_as, imported, users):
    ds, other = imported
    c = client_as("clinician")
    assert [d["name"] for d in rows(c.get("/api/datasets/"))] == ["members-only"]
    assert c.get(f"/api/datasets/{ds.pk}/").json()["counts"]["scans"] == 4
    assert c.get(f"/api/datasets/{other.pk}/").status_code == 404
    patients = rows(c.get(f"/api/datasets/{ds.pk}/patients/"))
    assert len(patients) == 2 and {p["label"] for p in patients} == {"normal", "abnormal"}
    series = rows(c.get(f"/api/datasets/{ds.pk}/series/?scans=1"))
    assert len(series) == 4
    vol = series[0]["volume"]
    assert len(vol["shape"]) == 3 and len(vol["affine"]) == 4 and vol["file"].endswith(".nii.gz")
    pid = patients[0]["id"]
    assert rows(c.get(f"/api/patients/{pid}/labels/"))[0]["source"] == "folder"
    assert c.post(f"/api/patients/{pid}/labels/", {"value": "abnormal"}).status_code == 403
    assert c.get(f"/api/datasets/{ds.pk}/imports/").status_code == 403
    a = client_as("admin")
    flip = "normal" if patients[0]["label"] == "abnormal" else "abnormal"
    r = a.post(f"/api/patients/{pid}/labels/", {"value": flip, "note": "api"}, content_type="application/json")
    assert r.status_code == 201 and r.json()["source"] == "ui" and r.json()["created_by"] == "adm"
    r = a.post(f"/api/patients/{pid}/labels/", {"value": flip}, content_type="application/json")
    assert r.status_code == 200  # already current: nothing added
    # per-side labels: which gland is abnormal, checked against the value
    r = a.post(f"/api/patients/{pid}/labels/", {"value": "abnormal", "side": "L"}, content_type="application/json")
    assert r.status_code == 201 and r.json()["side"] == "L"
    assert rows(a.get(f"/api/patients/{pid}/labels/"))[0]["side"] == "L"
    for bad in ({"value": "normal", "side": "R"}, {"value": "abnormal", "side": "none"},
                {"value": "abnormal", "side": "left"}):
        r = a.post(f"/api/patients/{pid}/labels/", bad, content_type="application/json")
        assert r.status_code == 400 and "side" in r.json(), bad
    reports = rows(a.get(f"/api/datasets/{ds.pk}/imports/"))
    assert reports[0]["counts"]["imported"] == 4
    detail = a.get(f"/api/imports/{reports[0]['id']}/").json()
    assert {i["status"] for i in detail["items"]} == {"imported", "skipped"}
    r = a.post(f"/api/datasets/{ds.pk}/imports/", {"path": "/no/such/folder"}, content_type="application/json")
    assert r.status_code == 400 and "inside an import root" in r.json()["path"][0]


def test_api_import_only_from_configured_roots(client_as, db, settings, tmp_path):
    from annotations.models import Dataset, ImportReport

    root, outside = tmp_path / "imports", tmp_path / "elsewhere"
    (root / "study").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)  # a link inside the root that leads out of it
    (root / "labels.csv").write_text("patient,label\n")
    settings.ADRENAL_IMPORT_ROOTS = [str(root)]
    ds = Dataset.objects.create(name="roots")
    a = client_as("admin")
    url = f"/api/datasets/{ds.pk}/imports/"

    def post(**body):
        return a.post(url, body, content_type="application/json")

    for path in (str(outside), "/etc", str(root / ".." / "elsewhere"), str(root / "escape")):
        r = post(path=path)
        assert r.status_code == 400 and "inside an import root" in r.json()["path"][0], path
    r = post(path=str(root / "missing"))
    assert r.status_code == 400 and "does not exist" in r.json()["path"][0]
    # a name longer than the file system takes (ENAMETOOLONG from exists()) and ~ of no user (RuntimeError) were
    # 500s (probe R); they are refusals of the field, repeating at most 200 characters of what was sent
    for field, body in (("path", {"path": "x" * 100_000}), ("path", {"path": "~no-such-user-here/study"}),
                        ("labels_csv", {"path": "study", "labels_csv": "y" * 5000})):
        r = post(**body)
        assert r.status_code == 400 and list(r.json()) == [field], (body, r.content[:300])
        assert len(r.json()[field][0]) < 400 and "on the server" in r.json()[field][0]
    r = post(path=str(root / "study"), labels_csv="/etc/passwd")
    assert r.status_code == 400 and "inside an import root" in r.json()["labels_csv"][0]
    assert not ImportReport.objects.filter(dataset=ds).exists()
    r = post(path="study", labels_csv=str(root / "labels.csv"))  # relative paths are inside the first root
    assert r.status_code == 202
    job = ImportReport.objects.get(dataset=ds).job
    assert job.params["path"] == str((root / "study").resolve())
    settings.ADRENAL_IMPORT_ROOTS = []
    r = post(path=str(root / "study"))
    assert r.status_code == 400 and "turned off" in r.json()["path"][0]


@pytest.mark.django_db(transaction=True)
def test_bare_nifti_upload_imports_one_scan(client_as, users, tmp_path, django_capture_on_commit_callbacks):
    import gzip

    import nibabel as nib
    import numpy as np

    ds = Dataset.objects.create(name="nifti-upload")
    c = client_as("admin")
    url = reverse("store-dataset-import", args=[ds.pk])
    page = c.get(url).content.decode()
    assert "or one NIfTI scan (.nii or .nii.gz" in page and 'accept=".zip,.nii,.nii.gz,.gz"' in page
    data = np.random.default_rng(0).integers(-200, 300, size=(24, 24, 16)).astype(np.int16)
    data[:4] = -1000  # air, which every CT holds (a NIfTI without is refused as not CT)
    for name, gz in (("P042.nii.gz", True), ("P043.nii", False)):
        nii = tmp_path / name
        nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 3.0, 1.0])), nii)
        assert nii.read_bytes()[:2] == (b"\x1f\x8b" if gz else nii.read_bytes()[:2])
        with open(nii, "rb") as fh:
            upload = io.BytesIO(fh.read())
        upload.name = name
        r = c.post(url, {"archive": upload})
        assert r.status_code == 302, r.content.decode()[:500]
        report = ImportReport.objects.get(source=name)
        run_job(import_studies.job_fn, report.job.pk)
        report.job.refresh_from_db()
        assert report.job.status == "succeeded" and report.job.result["imported"] == 1, report.job.result
        assert not Path(report.job.params["zip_path"]).exists()  # the upload is removed once imported
    assert Series.objects.filter(study__patient__dataset=ds, is_scan=True).count() == 2
    # a file named .nii.gz that is not one is refused with the reason, and nothing is queued
    for name, content in (("fake.nii.gz", b"plain text"), ("fake.nii", b"\0" * 400),
                          ("text.nii.gz", gzip.compress(b"not a header at all"))):
        upload = io.BytesIO(content)
        upload.name = name
        r = c.post(url, {"archive": upload})
        assert r.status_code == 400 and f"{name}: not a" in r.content.decode(), name
    assert ImportReport.objects.filter(dataset=ds).count() == 2


def test_a_zip_of_the_series_files_themselves_names_the_series_without_a_dot_folder(transactional_db, client_as, realct,
                                                                                    settings, tmp_path):
    """The real TotalSegmentator series zipped as its files (no folder inside the zip): the import report's row
    read ". [CT Body 3.0] (20 files)", the zip's top folder shown as "."; it reads "[CT Body 3.0] (20 files)"."""
    settings.MEDIA_ROOT = tmp_path
    ds = Dataset.objects.create(name="flat zip")
    upload = io.BytesIO(zip_of_folder(Path(realct["example_ct_dicom"])))
    upload.name = "ts.zip"
    c = client_as("admin")
    r = c.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    report = ImportReport.objects.get()
    run_job(import_studies.job_fn, report.job.pk)
    page = c.get(r["Location"]).content.decode()
    assert "[CT Body 3.0] (20 files)" in page
    assert ". [CT Body 3.0]" not in page
    assert [i.path for i in ImportItem.objects.filter(report=report)] == ["[CT Body 3.0] (20 files)"]


def test_the_label_forms_start_from_the_current_labels(client_as, imported):
    """The patient form of an abnormal (left) patient offered "normal" with side "left" (the side was pre-set, the
    value never was), so a note sent as shown was refused or, with the side changed, flipped the label; a series
    without an override offered "abnormal". Each form now starts from what is stored: the patient's value and
    side, a series' override, or "inherit"."""
    import re

    ds, _ = imported
    patient = Patient.objects.filter(dataset=ds).first()
    url = reverse("store-patient-labels", args=[patient.pk])
    c = client_as("admin")
    assert c.post(url, {"value": "abnormal", "side": "L", "note": "left"}).status_code == 302
    series = list(Series.objects.filter(study__patient=patient))
    assert c.post(url, {"value": "normal", "side": "none", "series": series[0].pk}).status_code == 302
    page = c.get(url).content.decode()
    form = page.split('id="patient-label-form"')[1].split("</form>")[0]
    assert '<option value="abnormal" selected>abnormal</option>' in form and '<option value="L" selected>' in form
    rows = re.findall(r'name="series" value="(\d+)">(.*?)</form>', page, re.S)
    chosen = {int(pk): re.search(r'<option value="(\w+)" selected>', body.split('name="side"')[0])[1]
              for pk, body in rows}
    assert chosen[series[0].pk] == "normal"
    assert all(chosen[s.pk] == "inherit" for s in series[1:])
    # sent as shown, the patient form keeps the label and adds the note
    assert c.post(url, {"value": "abnormal", "side": "L", "note": "checked"}).status_code == 302
    assert Label.objects.get(patient=patient, series=None, is_current=True).value == "abnormal"
