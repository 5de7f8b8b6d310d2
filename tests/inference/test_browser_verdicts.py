"""In Chromium, with a real worker: a clinician uploads a CT on the verdicts page, follows the job to its verdict
with both glands' findings, opens it in the viewer and toggles the evidence overlay, which lies where the view's
transform puts the map's millimetres (recomputed here from inference.ml.geometry)."""
from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow]

RED_MINUS_BLUE = """([x, y]) => {
  const c = document.getElementById('axial');
  const t = window.viewer.views.axial.t;
  const [sx, sy] = t.deviceScale;
  window.viewer.renderAll();
  const d = c.getContext('2d').getImageData(Math.round(x * sx), Math.round(y * sy), 1, 1).data;
  return d[0] - d[2];
}"""


def expected_rect(state: dict, affine: np.ndarray, heat: dict) -> dict:
    """The screen rectangle (CSS px) of a map's outer cell edges, from the view's state and the volume's affine
    through inference.ml.geometry: LPS -> voxel -> plane mm -> screen, as geometry.js documents it."""
    from inference.ml.geometry import lps_to_voxel

    rows, cols = heat["shape"]
    xs = [heat["x0"] + (c * heat["dx"]) for c in (-0.5, cols - 0.5)]
    ys = [heat["y0"] + (r * heat["dy"]) for r in (-0.5, rows - 0.5)]
    pts = []
    for x in xs:
        for y in ys:
            ijk = lps_to_voxel(affine, [x, y, heat["z"]])
            h, v = state["hs"] * ijk[state["colAxis"]], state["vs"] * ijk[state["rowAxis"]]
            pts.append(((h - state["centre"][0]) * state["zoom"] + state["cssW"] / 2,
                        (v - state["centre"][1]) * state["zoom"] + state["cssH"] / 2))
    return {"x1": min(p[0] for p in pts), "x2": max(p[0] for p in pts),
            "y1": min(p[1] for p in pts), "y2": max(p[1] for p in pts)}


def test_submit_a_scan_see_the_verdict_per_side_and_toggle_the_evidence(live_server, browser_page, browser_login,
                                                                        celery_worker_proc, users, gland_model,
                                                                        realct):
    from inference.models import Prediction

    run = gland_model(members=[users["clinician"]])  # a model of a dataset the clinician belongs to
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    browser_login(page, "clin")
    page.goto(f"{live_server.url}/verdicts/")
    page.set_input_files("#upload-file", str(realct["example_ct"]))
    page.click("#upload-submit")
    page.wait_for_url("**/verdicts/jobs/*/")
    # followed live until done, then the page shows the verdict the worker made
    page.wait_for_selector('#side-findings tr[data-side="L"]', timeout=180_000)
    assert page.inner_text("#verdict-badge").lower() == "abnormal"  # the model flags every image
    rows = {s: page.inner_text(f'#side-findings tr[data-side="{s}"]') for s in "RL"}
    assert all("abnormal" in r for r in rows.values()) and "right" in rows["R"] and "left" in rows["L"]
    assert f"run #{run.pk}" in page.inner_text("#model")
    p = Prediction.objects.get(job__created_by=users["clinician"])
    assert p.evidence and set(p.side_details) == {"R", "L"}
    thumbs = page.locator(".evidence-thumbs img")
    assert thumbs.count() > 0
    for k in range(thumbs.count()):  # each thumbnail loads (it is fetched after the page): a 128 px PNG
        expect(thumbs.nth(k)).to_have_js_property("naturalWidth", 128, timeout=30_000)

    page.click("#open-viewer")
    page.wait_for_function("window.viewer && window.viewer.ready", timeout=60_000)
    assert page.inner_text("#verdict-sides").count("abnormal") == 2
    page.click("#evidence-list button >> nth=0")  # goes to the first map's slice
    drawn = page.evaluate("window.viewer.evidence.drawn")
    assert drawn and drawn[0]["side"] == p.evidence[0]["side"]
    state = page.evaluate("window.viewer.views.axial.t.state()")
    want = expected_rect(state, np.asarray(p.series.volume.affine), p.evidence[0]["heat"])
    assert all(abs(drawn[0]["rect"][k] - want[k]) < 0.5 for k in want), (drawn[0]["rect"], want)
    peak = drawn[0]["peak"]
    on = page.evaluate(RED_MINUS_BLUE, peak)
    page.click("#evidence-toggle")  # off
    assert not page.is_checked("#evidence-toggle")
    off = page.evaluate(RED_MINUS_BLUE, peak)
    assert page.evaluate("window.viewer.evidence.drawn") == []
    assert on > 20 and abs(off) <= 2, (on, off)  # the red-yellow map over a grey CT, then the grey CT alone
    page.keyboard.press("e")  # the key brings it back; opacity 0 hides it again
    assert page.is_checked("#evidence-toggle") and page.evaluate(RED_MINUS_BLUE, peak) == on
    page.eval_on_selector("#evidence-opacity", "(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    assert abs(page.evaluate(RED_MINUS_BLUE, peak)) <= 2
    assert not errors, errors
