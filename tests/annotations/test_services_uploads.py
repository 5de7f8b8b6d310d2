"""One upload path for the store's zip import and the prediction upload: the same size limit, the same zip
checks (entries, expanded size, expansion ratio, no absolute paths or links), extraction only in the job, and
the upload removed whenever its job ends (succeeded, failed or cancelled)."""
from __future__ import annotations

import io
import stat
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from django.urls import reverse

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import request_cancel, run_now
from annotations.services import uploads
from annotations.services.uploads import UploadRefused, check_zip, discard_upload, extract_zip
from annotations.tasks import import_studies, start_import
from tests.factories import make_dataset, make_run


def write_zip(path: Path, entries: dict[str, bytes], *, compress=zipfile.ZIP_DEFLATED, links=()) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def bomb(path: Path, mb: int = 64) -> Path:
    """A zip of ``mb`` MB of zeros: ~1000 times smaller than what it expands to."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("zeros.dcm", "w") as fh:
            block = bytes(1 << 20)
            for _ in range(mb):
                fh.write(block)
    return path


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ADRENAL_MAX_UPLOAD_BYTES = 100 * 1024**2
    return Path(settings.MEDIA_ROOT)


def upload_files(media: Path) -> list[str]:
    root = media / "uploads"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_a_zip_bomb_is_refused_by_its_ratio(tmp_path, media):
    path = bomb(tmp_path / "bomb.zip")
    assert path.stat().st_size < 1024**2
    with pytest.raises(UploadRefused, match=r"expands \d+ times its size.*zip bomb"):
        check_zip(path)


def test_links_absolute_paths_entry_count_and_declared_size_are_refused(tmp_path, media, settings, monkeypatch):
    with pytest.raises(UploadRefused, match="symbolic link"):
        check_zip(write_zip(tmp_path / "link.zip", {"a/ok.dcm": b"x" * 100}, links=["a/evil"]))
    with pytest.raises(UploadRefused, match="absolute path or '..'"):
        check_zip(write_zip(tmp_path / "abs.zip", {"/etc/cron.d/x": b"x"}))
    with pytest.raises(UploadRefused, match="absolute path or '..'"):
        check_zip(write_zip(tmp_path / "up.zip", {"a/../../x": b"x"}))
    monkeypatch.setattr(uploads, "MAX_ENTRIES", 5)
    with pytest.raises(UploadRefused, match="6 entries"):
        check_zip(write_zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(6)}))
    settings.ADRENAL_MAX_UPLOAD_BYTES = 1000  # expands to at most 4000 bytes
    with pytest.raises(UploadRefused, match="over the limit of"):
        check_zip(write_zip(tmp_path / "big.zip", {"a": bytes(range(256)) * 20}, compress=zipfile.ZIP_STORED))
    with pytest.raises(UploadRefused, match="damaged|not a zip"):
        (tmp_path / "corrupt.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 200)
        check_zip(tmp_path / "corrupt.zip")


def directory_zip(path: Path, entries: int, *, declare: int | None = None, name: bytes = b"a") -> Path:
    """A zip of one 10-byte file whose central directory lists it ``entries`` times under names ``name`` + a
    7-digit number (what ``zipfile`` parses into one object per entry), the end record declaring ``declare``
    entries (default: the truth; zip64 records past 65 534). Written raw: a million entries take 54 MB and a few
    seconds."""
    data = b"x" * 10
    crc = zlib.crc32(data)
    first = name + b"0000000"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, 10, 10, len(first), 0) + first + data
    head = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, 10, 10, len(first), 0, 0, 0,
                       0, 0, 0)
    declare = entries if declare is None else declare
    size = (len(head) + len(first)) * entries
    with open(path, "wb") as fh:
        fh.write(local)
        for done in range(0, entries, 10_000):
            fh.write(b"".join(head + name + b"%07d" % i for i in range(done, min(done + 10_000, entries))))
        if declare >= 0xFFFF:
            fh.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, declare, declare, size, len(local)))
            fh.write(struct.pack("<IIQI", 0x07064B50, 0, len(local) + size, 1))
            fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
        else:
            fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, declare, declare, size, len(local), 0))
    return path


def test_a_zip_directory_of_too_many_entries_is_refused_before_it_is_parsed(tmp_path, media, monkeypatch):
    # zipfile builds an object per directory entry (~400 bytes) before the entry count could be checked: a 188 MB
    # upload of 4 million entries cost the web request 1.6 GB and 29 s. Now the end record's count and a walk of
    # the directory's headers refuse it first, whatever count the end record declares.
    tracemalloc.start()
    try:
        with pytest.raises(UploadRefused, match="1000000 entries"):
            check_zip(directory_zip(tmp_path / "million.zip", 1_000_000))
        with pytest.raises(UploadRefused, match="more than 200000 entries"):
            check_zip(directory_zip(tmp_path / "lying.zip", 300_000, declare=1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024**2, f"{peak / 1024**2:.0f} MB"  # the 16 MB directory read once, no entry objects
    assert len(check_zip(directory_zip(tmp_path / "zip64.zip", 70_000))) == 70_000  # zip64 end record read
    monkeypatch.setattr(uploads, "MAX_DIRECTORY_BYTES", 1024**2)
    with pytest.raises(UploadRefused, match="directory of entries is 2 MB"):
        check_zip(directory_zip(tmp_path / "long.zip", 2000, name=b"n" * 1000))


@pytest.mark.django_db
def test_entries_that_cannot_be_extracted_as_named_are_refused_naming_them(tmp_path, media, users, client):
    """A zip whose entries could not all be written as named was accepted and its job failed with the operating
    system's error and nothing imported: 'OSError: [Errno 36] File name too long', 'FileExistsError: ... a'
    (a file 'a' beside 'a/b.dcm'), a RecursionError (an entry 2000 folders deep). Now refused before anything is
    queued, naming the entry; folders listed as their own entries and ordinary trees pass."""
    cases = {
        "name of 304 bytes (limit 255)": {"d/" + "n" * 300 + ".dcm": b"x", "ok/1.dcm": b"x"},
        "is a file and a folder": {"a": b"x" * 10, "a/b.dcm": b"x"},
        "2000 folders deep (limit 64)": {"/".join(["d"] * 2000) + "/1.dcm": b"x"},
        "path over 1024 bytes": {"/".join(["f" * 200] * 6) + "/1.dcm": b"x"},
    }
    for reason, entries in cases.items():
        with pytest.raises(UploadRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
            check_zip(write_zip(tmp_path / "bad.zip", entries))
    with pytest.raises(UploadRefused, match="two entries named 'd/1.dcm'"):
        path = tmp_path / "dup.zip"
        with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("d/1.dcm", b"x")
            zf.writestr("d/1.dcm", b"y")
        check_zip(path)
    with zipfile.ZipFile(tmp_path / "tree.zip", "w") as zf:
        zf.writestr(zipfile.ZipInfo("study/"), b"")
        zf.writestr(zipfile.ZipInfo("study/series/"), b"")
        zf.writestr("study/series/1.dcm", b"x" * 10)
        zf.writestr("./study/series/2.dcm", b"x" * 10)
    assert len(check_zip(tmp_path / "tree.zip")) == 4
    ds = make_dataset("up", members=[users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    client.force_login(users["clinician"])
    upload = io.BytesIO(write_zip(tmp_path / "long.zip", cases["name of 304 bytes (limit 255)"]).read_bytes())
    upload.name = "study.zip"
    r = client.post("/api/predictions/", {"file": upload, "dataset": ds.pk})
    assert r.status_code == 400 and "name of 304 bytes" in r.json()["file"][0], r.content
    assert not Job.objects.filter(kind="predict").exists()
    assert upload_files(media) == []


def test_extraction_counts_the_bytes_really_written(tmp_path, media):
    path = write_zip(tmp_path / "ok.zip", {"a/b.dcm": bytes(range(256)) * 40})
    out = extract_zip(path, tmp_path / "out", max_bytes=100_000)
    assert (out / "a" / "b.dcm").stat().st_size == 10240
    with pytest.raises(UploadRefused):
        extract_zip(path, tmp_path / "out2", max_bytes=5000)


def test_discard_removes_only_what_lies_under_uploads(tmp_path, media):
    own = media / "uploads" / "abc"
    own.mkdir(parents=True)
    (own / "upload.zip").write_bytes(b"x")
    (media / "uploads" / "job-7" / "files").mkdir(parents=True)
    outside = tmp_path / "admin-folder"
    outside.mkdir()
    (outside / "a.dcm").write_bytes(b"x")
    removed = discard_upload(7, {"zip_path": str(own / "upload.zip"), "path": str(outside)})
    assert {p.name for p in removed} == {"abc", "job-7"}
    assert (outside / "a.dcm").exists() and upload_files(media) == []


# --- both entry points -------------------------------------------------------------------------------------


def _post_upload(where: str, upload, ds, users, client):
    """``upload`` sent to the store's zip import as its admin (``where`` "store") or for a verdict as a clinician."""
    if where == "store":
        client.force_login(users["admin"])
        return client.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
    client.force_login(users["clinician"])
    return client.post("/api/predictions/", {"file": upload, "dataset": ds.pk})


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["store", "predict"])
def test_both_upload_entry_points_refuse_a_bomb_and_keep_nothing(where, tmp_path, media, users, client):
    ds = make_dataset("up", members=[users["admin"], users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    data = bomb(tmp_path / "b.zip").read_bytes()
    upload = io.BytesIO(data)
    upload.name = "study.zip"
    r = _post_upload(where, upload, ds, users, client)
    assert r.status_code == 400 and "zip bomb" in r.content.decode()
    assert upload_files(media) == [] and not Job.objects.filter(kind__in=["import", "predict"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["store", "predict"])
def test_both_upload_entry_points_share_the_size_limit(where, media, settings, users, client):
    settings.ADRENAL_MAX_UPLOAD_BYTES = 1024**2
    ds = make_dataset("up", members=[users["admin"], users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    upload = io.BytesIO(bytes(range(256)) * (12 * 1024))  # 3 MB
    upload.name = "study.nii.gz"
    if where == "store":
        upload.name = "study.zip"
    r = _post_upload(where, upload, ds, users, client)
    assert r.status_code == 413 and "the limit of 1 MB" in r.content.decode(), r.content[:300]
    assert upload_files(media) == [] and not Job.objects.filter(kind__in=["import", "predict"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["store", "predict"])
@pytest.mark.parametrize("stem", ["é" * 240, "a" * 250, "日本" * 100])
def test_an_upload_of_a_long_name_is_stored_under_a_shorter_one(where, stem, tmp_path, media, users, client):
    """A file name of up to 255 characters (what browsers and Django send) was stored as it came: in UTF-8 and
    with the atomic write's temporary prefix, longer than a file system takes, an OSError and a 500 on both entry
    points (probe R). The stored name keeps the suffix and at most ``uploads.MAX_STORED_NAME_BYTES`` bytes."""
    ds = make_dataset("up", members=[users["admin"], users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    upload = io.BytesIO(write_zip(tmp_path / "s.zip", {"a.dcm": b"x" * 100}).read_bytes())
    upload.name = stem + ".zip"
    r = _post_upload(where, upload, ds, users, client)
    assert r.status_code in (202, 302), r.content[:300]
    [stored] = [p for p in (media / "uploads").rglob("*.zip")]
    assert len(stored.name.encode()) <= uploads.MAX_STORED_NAME_BYTES and stored.name.endswith(".zip")
    assert where == "store" or stem.startswith(stored.name[:-4])  # the store saves its archive as upload.zip


@pytest.mark.django_db
def test_the_prediction_upload_is_not_extracted_in_the_request(tmp_path, media, users, client):
    ds = make_dataset("up", members=[users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    upload = io.BytesIO(write_zip(tmp_path / "s.zip", {"series/IM1.dcm": bytes(range(256)) * 8}).read_bytes())
    upload.name = "s.zip"
    client.force_login(users["clinician"])
    r = client.post("/api/predictions/", {"file": upload, "dataset": ds.pk})
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job"])
    files = upload_files(media)
    assert len(files) == 2 and files[1].endswith("/s.zip"), files  # the folder and the archive, nothing extracted
    assert job.params["path"].endswith("s.zip")


# --- removed when the job ends -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_cancelled_queued_prediction_removes_its_upload(tmp_path, media, users, client,
                                                          django_capture_on_commit_callbacks):
    ds = make_dataset("up", members=[users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    upload = io.BytesIO(write_zip(tmp_path / "s.zip", {"series/IM1.dcm": b"x" * 100}).read_bytes())
    upload.name = "s.zip"
    client.force_login(users["clinician"])
    job = Job.objects.get(pk=client.post("/api/predictions/", {"file": upload, "dataset": ds.pk}).json()["job"])
    assert upload_files(media)
    with django_capture_on_commit_callbacks(execute=True):
        request_cancel(job)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and upload_files(media) == []


@pytest.mark.django_db
def test_a_queued_job_deleted_in_the_admin_removes_its_upload(tmp_path, media, users, client_as,
                                                              django_capture_on_commit_callbacks):
    """A queued import or prediction deleted (the admin's job list, or with its parent job) never ends, so no
    ``job_ended`` removed its upload: the zip stayed under uploads/ for good. Another job's upload stays."""
    ds = make_dataset("up")
    uploads = {}
    for n in (1, 2):
        folder = media / "uploads" / f"u{n}"
        folder.mkdir(parents=True)
        uploads[n] = start_import(ds, zip_path=str(write_zip(folder / "upload.zip", {"a/b.dcm": b"x" * 100})),
                                  send=False)
    assert upload_files(media) == ["u1", "u1/upload.zip", "u2", "u2/upload.zip"]
    with django_capture_on_commit_callbacks(execute=True):
        r = client_as("admin").post(f"/admin/jobs/job/{uploads[1].pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and not Job.objects.filter(pk=uploads[1].pk).exists()
    assert upload_files(media) == ["u2", "u2/upload.zip"]


@pytest.mark.django_db(transaction=True)  # run_now closes connections, as a worker does
def test_a_failed_import_removes_its_upload(tmp_path, media, users):
    ds = make_dataset("up")
    folder = media / "uploads" / "u1"
    folder.mkdir(parents=True)
    zip_path = write_zip(folder / "upload.zip", {"a/b.dcm": b"x" * 100})
    job = start_import(ds, zip_path=str(zip_path), send=False)
    zip_path.write_bytes(b"damaged after it was checked")
    run_now(import_studies, job)  # the end is announced on commit
    assert job.status == Job.Status.FAILED and "not a zip archive" in job.message
    assert upload_files(media) == []


@pytest.mark.django_db(transaction=True)  # run_now closes connections, as a worker does
def test_a_succeeded_import_removes_its_upload(tmp_path, media, users):
    ds = make_dataset("up")
    folder = media / "uploads" / "u2"
    folder.mkdir(parents=True)
    zip_path = write_zip(folder / "upload.zip", {"notes/readme.txt": b"no DICOM here"})
    job = start_import(ds, zip_path=str(zip_path), send=False)
    run_now(import_studies, job)  # the end is announced on commit
    assert job.status == Job.Status.SUCCEEDED, job.error
    # the job says it brought nothing in (an admin reading "succeeded" alone would think it had)
    assert job.message == "nothing imported: 1 skipped, 0 failed (the import report gives each reason)"
    assert upload_files(media) == []


@pytest.mark.django_db(transaction=True)  # run_now closes connections, as a worker does
@pytest.mark.parametrize("where", ["store", "predict"])
def test_a_small_zip_of_flat_pixels_is_no_zip_bomb(where, realct, tmp_path, media, users, client,
                                                   django_capture_on_commit_callbacks):
    """pydicom-data's SC_rgb_32bit.dcm (121 KB of flat synthetic RGB) deflates 110 times: zipped alone it was
    refused as a zip bomb ("expands 110 times its size (0.0 MB to 0 MB)") at both upload entry points, hiding
    the real answer. The ratio counts only for zips expanding past RATIO_FLOOR_BYTES; the file reaches the
    importer, which names its problem (a secondary capture, not CT). The 64 MB bomb stays refused (above)."""
    from annotations.models import ImportItem

    data = (realct["pydicom_data"] / "SC_rgb_32bit.dcm").read_bytes()
    path = write_zip(tmp_path / "sc.zip", {"study/SC_rgb_32bit.dcm": data})
    assert len(data) / path.stat().st_size > uploads.max_ratio()
    assert [m.filename for m in check_zip(path)] == ["study/SC_rgb_32bit.dcm"]
    ds = make_dataset("up", members=[users["admin"], users["clinician"]])
    make_run(ds, promoted=True, operating_value=0.5)
    upload = io.BytesIO(path.read_bytes())
    upload.name = "study.zip"
    with django_capture_on_commit_callbacks(execute=False):
        if where == "store":
            client.force_login(users["admin"])
            r = client.post(reverse("store-dataset-import", args=[ds.pk]), {"archive": upload})
            assert r.status_code == 302, r.content.decode()[:300]
        else:
            client.force_login(users["clinician"])
            r = client.post("/api/predictions/", {"file": upload, "dataset": ds.pk})
            assert r.status_code == 202, r.content.decode()[:300]
    job = Job.objects.get(kind="import" if where == "store" else "predict")
    if where == "store":
        run_now(import_studies, job)
        assert ImportItem.objects.get(report__job=job).reason .startswith("secondary capture")
