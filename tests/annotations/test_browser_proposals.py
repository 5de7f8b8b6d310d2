"""In Chromium, on the real TotalSegmentator CT: a clinician sees where each box came from (the proposer's method
and confidence, its note) and why a side has no box, in the viewer's side panel and the worklist; drawing a box
on that side replaces the note by "drawn or edited by hand"."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser]

R_BOX = ([-60.0, -200.0, 150.0], [-10.0, -150.0, 200.0])
L_BOX = ([20.0, -200.0, 150.0], [70.0, -150.0, 200.0])
L_NOTE = "the left adrenal's expected place (x 40 mm, y -175 mm) is outside the field of view"


def test_the_panel_and_worklist_say_how_boxes_were_made_and_why_a_side_has_none(
        live_server, browser_page, browser_login, ct_series, users):
    from annotations.services.boxes import save_box, set_uncovered_sides

    series = ct_series(members=[users["clinician"]])
    save_box(series, "R", *R_BOX, source="atlas", confidence=0.8234,
             note="placed for a mass next to the gland that the atlases do not show (lesion?)")
    set_uncovered_sides(series, {"L": L_NOTE})
    page = browser_page
    browser_login(page, "clin")

    page.goto(f"{live_server.url}/datasets/{series.dataset.pk}/")
    row = page.locator(f"#worklist tr[data-id='{series.pk}']")
    assert row.locator(".box-side[data-side='R']").inner_text().startswith(
        "R proposed by atlas registration, confidence 0.82: placed for a mass")
    assert row.locator(".box-side[data-side='L']").inner_text() == f"L not covered: {L_NOTE}"

    page.goto(f"{live_server.url}/series/{series.pk}/")
    page.wait_for_function("window.viewer && window.viewer.ready")
    assert page.inner_text("#box-why-R") == ("proposed by atlas registration, confidence 0.82 · placed for a mass "
                                             "next to the gland that the atlases do not show (lesion?)")
    assert page.inner_text("#box-why-L") == f"not covered: {L_NOTE}"

    # a box the clinician puts on that side (through the page's box store, as a drag does) takes the note away
    page.evaluate("async ([lo, hi]) => { window.viewer.boxes.set('L', lo, hi); await window.viewer.boxes.save('L'); }",
                  list(L_BOX))
    assert page.inner_text("#box-why-L") == "drawn or edited by hand"
    page.reload()
    page.wait_for_function("window.viewer && window.viewer.ready")
    assert page.inner_text("#box-why-L") == "drawn or edited by hand"
    series.refresh_from_db()
    assert series.uncovered_sides == {}
