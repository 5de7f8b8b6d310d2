"""In Chromium: an admin uploads a zip of a small cohort on the import page, watches the job's progress on the
import report (a real cpu worker runs it) and reads why the localizers and the non-DICOM files were left out."""
from __future__ import annotations

import zipfile

import pytest

from annotations.models import Dataset, Series
from tests.plugins.store import make_store_cohort

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_admin_uploads_a_zip_and_watches_the_import(live_server, dashboard_chromium, celery_worker_proc, users,
                                                    tmp_path):
    root = tmp_path / "cohort"
    make_store_cohort(root, patients=2)
    archive = tmp_path / "cohort.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root))
    ds = Dataset.objects.create(name="browser-upload")
    context = dashboard_chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", "adm")
        page.fill("input[name=password]", "pw-adm")
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state()
        page.goto(f"{live_server.url}/store/datasets/{ds.pk}/import/")
        # a refused upload first: a text file is not a zip
        bad = tmp_path / "notes.txt"
        bad.write_text("not an archive")
        page.set_input_files("input[name=archive]", str(bad))
        page.click("#upload-form button[type=submit]")
        page.wait_for_load_state()
        assert "notes.txt: the upload is not a zip archive" in page.inner_text(".flash.error")
        page.set_input_files("input[name=archive]", str(archive))
        page.click("#upload-form button[type=submit]")
        page.wait_for_url("**/store/imports/*/", timeout=20000)
        # the page follows the job and reloads with the report once it finishes
        page.wait_for_selector("#import-job[data-job-status='succeeded']", timeout=90000)
        assert page.inner_text("[data-count='imported']") == "4"
        rows = page.inner_text("#items")
        assert "localizer/scout image" in rows and "not a DICOM file" in rows
        assert Series.objects.filter(study__patient__dataset=ds, is_scan=True).count() == 4
        page.goto(f"{live_server.url}/store/")
        assert page.inner_text(f"tr[data-dataset='{ds.pk}'] td[data-count='scans']") == "4"
        assert not errors, errors
    finally:
        context.close()
