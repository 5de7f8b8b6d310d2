"""Browser-test fixtures anyone can reuse: Debian's chromium through Playwright, a logged-in page on the live
server, and a CT series with a real volume (the TotalSegmentator example CT) created directly in the database.

``browser_chromium`` launches ``/usr/bin/chromium`` headless (never ``playwright install``); ``browser_page``
opens a page in a fresh context; ``browser_login(page, username)`` signs in on ``live_server``;
``ct_series(dataset=..., members=[...], name=...)`` returns a Series with its Volume.
"""
from __future__ import annotations

import os
import uuid

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def launch_chromium(pw):
    """Debian's chromium with the project's flags."""
    return pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser_chromium(request):
    """One headless chromium per session. Reuses another plugin's session browser when one is registered,
    since only one Playwright sync loop can run in the test thread."""
    try:
        yield request.getfixturevalue("dashboard_chromium")
        return
    except pytest.FixtureLookupError:
        pass
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()


# Playwright's wait_for_function compiles its predicate in the page, which the Content-Security-Policy (no
# 'unsafe-eval') forbids; contexts of tests that use it bypass the policy. That every page works under the policy
# is tested without bypassing it (tests/foundation/test_browser_security.py).
TEST_CONTEXT = {"bypass_csp": True}


@pytest.fixture
def browser_page(browser_chromium):
    """A page in a fresh browser context (own cookies), 1400x900, the CSP bypassed (``TEST_CONTEXT``)."""
    context = browser_chromium.new_context(viewport={"width": 1400, "height": 900}, **TEST_CONTEXT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def browser_login(live_server):
    """``browser_login(page, username, password=None)``: sign in through the login form (password
    defaults to the ``make_user`` convention ``pw-<username>``)."""

    def login(page, username: str, password: str | None = None):
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password or f"pw-{username}")
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state()
        return page

    return login


@pytest.fixture
def ct_series(transactional_db, realct, settings):
    """``ct_series(dataset=None, members=(), name="viewer", patient="P001", path=None)``: a scan Series with a
    Volume written from a real NIfTI (default: the TotalSegmentator example CT, 122x101x112 at 3 mm), or
    from ``volume`` (an ``inference.ml.volume.Volume``)."""
    from annotations.models import Dataset, Patient, Series, Study, Volume
    from inference.ml.geometry import spacing_of
    from inference.ml.volume import load_nifti, save_nifti

    cache: dict = {}

    def make(dataset=None, members=(), name: str = "viewer", patient: str = "P001", path=None,
             description: str = "Abdomen 3 mm", volume=None):
        if dataset is None:
            dataset, _ = Dataset.objects.get_or_create(name=name)
        dataset.members.add(*members)
        pat, _ = Patient.objects.get_or_create(dataset=dataset, pseudo_id=patient)
        study = Study.objects.create(patient=pat, study_uid=f"1.2.826.0.1.{uuid.uuid4().int % 10**12}")
        series = Series.objects.create(study=study, series_uid=f"1.2.826.0.2.{uuid.uuid4().int % 10**12}",
                                       series_description=description, modality="CT")
        src = path or realct["example_ct"]
        if volume is None and src not in cache:
            cache[src] = load_nifti(src)
        vol = volume if volume is not None else cache[src]
        rel = f"volumes/test-{series.pk}-{uuid.uuid4().hex[:8]}.nii.gz"
        save_nifti(vol, settings.MEDIA_ROOT / rel)
        Volume.objects.create(series=series, file=rel, shape=list(vol.shape),
                              spacing_mm=[float(s) for s in spacing_of(vol.affine)], affine=vol.affine.tolist())
        return series

    return make
