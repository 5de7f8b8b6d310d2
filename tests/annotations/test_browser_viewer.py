"""In Chromium: a clinician scrolls, windows, draws and adjusts both crop boxes, and the API returns them in the
millimetres the drag meant (screen -> voxel from the page's view transform, voxel -> LPS by the affine here);
confirming proposals; the 409 path; no access to datasets the clinician is not a member of."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from inference.ml.geometry import voxel_to_lps

pytestmark = [pytest.mark.browser]
SHOTS = os.environ.get("VIEWER_SCREENSHOTS")  # a folder: save screenshots there to look at them


def open_viewer(page, live_server, series, query: str = ""):
    page.goto(f"{live_server.url}/series/{series.pk}/{query}")
    page.wait_for_function("window.viewer && window.viewer.ready")
    return page


def canvas_origin(page, plane: str) -> tuple[float, float]:
    box = page.locator(f"#{plane}").bounding_box()
    return box["x"], box["y"]


def voxel_at(page, plane: str, x: float, y: float) -> np.ndarray:
    """Continuous voxel (i, j, k) under canvas point (x, y), from the page's own view transform."""
    return np.asarray(page.evaluate(f"([x, y]) => window.viewer.views.{plane}.canvasToVoxel(x, y)", [x, y]))


def drag(page, plane: str, a, b, steps: int = 8):
    ox, oy = canvas_origin(page, plane)
    page.mouse.move(ox + a[0], oy + a[1])
    page.mouse.down()
    page.mouse.move(ox + b[0], oy + b[1], steps=steps)
    page.mouse.up()


def wait_saved(page):
    page.wait_for_function(
        "['R','L'].every(s => { const b = window.viewer.store.boxes[s]; return !b || (!b.dirty && b.version > 0); })")
    page.evaluate("Promise.all([window.viewer.store.saving.R, window.viewer.store.saving.L])")


def shot(page, name: str):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def test_clinician_draws_and_adjusts_both_boxes(live_server, browser_page, browser_login, ct_series, users):
    page = browser_page
    series = ct_series(members=[users["clinician"]])
    affine = np.asarray(series.volume.affine)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    nk = series.volume.shape[0]
    k0 = page.evaluate("window.viewer.shared.position[2]")
    assert k0 == nk // 2

    # scroll: wheel and arrow keys
    ox, oy = canvas_origin(page, "axial")
    page.mouse.move(ox + 200, oy + 200)
    for _ in range(3):
        page.mouse.wheel(0, 100)
    page.wait_for_function(f"window.viewer.shared.position[2] === {k0 + 3}")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("window.viewer.shared.position[2]") == k0 + 2
    z_text = page.evaluate("window.viewer.sliceZ(window.viewer.shared.position[2])")
    assert z_text == pytest.approx(voxel_to_lps(affine, [0, 0, k0 + 2])[2])

    # window/level: presets and drag
    page.keyboard.press("2")
    assert page.evaluate("[window.viewer.state.level, window.viewer.state.width]") == [100, 600]
    drag(page, "axial", (300, 300), (340, 280))
    level, width = page.evaluate("[window.viewer.state.level, window.viewer.state.width]")
    assert (level, width) == (100 + 40, 600 + 160)
    page.keyboard.press("1")
    assert page.locator("#wl").inner_text() == "W 400 / L 40"
    # the help overlay lists the shortcuts
    page.keyboard.press("?")
    assert page.locator("#help").is_visible() and "next unconfirmed scan" in page.locator("#help").inner_text()
    shot(page, "viewer-help")
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()

    # R box: drawn on the axial view, then z-range marked by first/last slices
    page.keyboard.press("r")
    page.keyboard.press("d")
    a, b = (180.0, 250.0), (260.0, 330.0)
    drag(page, "axial", a, b)
    va, vb = voxel_at(page, "axial", *a), voxel_at(page, "axial", *b)
    wait_saved(page)  # version 1: the drawn box; the edits below make later versions
    k = page.evaluate("window.viewer.shared.position[2]")
    for _ in range(4):
        page.keyboard.press("ArrowUp")
    page.keyboard.press("]")
    for _ in range(9):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("[")
    k_hi, k_lo = k + 4, k - 5
    # adjust: move the right edge 30 px further right
    right_edge = (b[0], (a[1] + b[1]) / 2)
    page.keyboard.press("ArrowUp")  # back inside the z-range so the handles show
    drag(page, "axial", right_edge, (right_edge[0] + 30, right_edge[1]))
    vb2 = voxel_at(page, "axial", b[0] + 30, b[1])
    ends = [voxel_to_lps(affine, v) for v in (va, vb2)]
    exp_r_min = [min(ends[0][0], ends[1][0]), min(ends[0][1], ends[1][1]), voxel_to_lps(affine, [0, 0, k_lo])[2]]
    exp_r_max = [max(ends[0][0], ends[1][0]), max(ends[0][1], ends[1][1]), voxel_to_lps(affine, [0, 0, k_hi])[2]]

    # L box: a click places the default 72 x 72 mm box; then its top edge is dragged up on the coronal view
    page.keyboard.press("l")
    page.keyboard.press("d")
    c = (420.0, 300.0)
    page.mouse.click(ox + c[0], oy + c[1])
    centre = voxel_to_lps(affine, voxel_at(page, "axial", *c))
    kc = page.evaluate("window.viewer.shared.position[2]")
    zc = voxel_to_lps(affine, [0, 0, kc])[2]
    wait_saved(page)
    box_l = page.evaluate("window.viewer.store.boxes.L")
    assert box_l["lps_max"][0] - box_l["lps_min"][0] == pytest.approx(72, abs=0.02)
    assert box_l["lps_max"][1] - box_l["lps_min"][1] == pytest.approx(72, abs=0.02)
    assert box_l["lps_max"][2] == pytest.approx(zc + 30, abs=0.02)
    # top edge of the L box in the coronal view: put the coronal slice through the box first
    page.evaluate(f"""() => {{ const v = window.viewer; const ijk = v.vol.lpsToVoxel({centre[0]}, {centre[1]}, {zc});
        v.shared.position[1] = Math.round(ijk[1]); v.renderAll(); }}""")
    top = page.evaluate("""() => { const v = window.viewer.views.coronal, b = window.viewer.store.boxes.L;
        const [h, vv] = v.lpsToMm(b.lps_max); const [h0] = v.lpsToMm(b.lps_min);
        return [v.mmToCanvas((h + h0) / 2, vv)[0], v.mmToCanvas(h, vv)[1]]; }""")
    drag(page, "coronal", top, (top[0], top[1] - 15))
    z_top = voxel_to_lps(affine, voxel_at(page, "coronal", top[0], top[1] - 15))[2]
    exp_l_min = [centre[0] - 36, centre[1] - 36, zc - 30]
    exp_l_max = [centre[0] + 36, centre[1] + 36, z_top]
    shot(page, "viewer-boxes")
    wait_saved(page)

    # reload: the boxes come back, and the API has the right millimetres
    page.reload()
    page.wait_for_function("window.viewer && window.viewer.ready")
    assert "v" in page.locator("#box-R").inner_text() and "v" in page.locator("#box-L").inner_text()
    data = page.request.get(f"{live_server.url}/api/series/{series.pk}/boxes/").json()
    r, l_ = data["boxes"]["R"], data["boxes"]["L"]
    np.testing.assert_allclose(r["lps_min"], exp_r_min, atol=0.02)
    np.testing.assert_allclose(r["lps_max"], exp_r_max, atol=0.02)
    np.testing.assert_allclose(l_["lps_min"], exp_l_min, atol=0.02)
    np.testing.assert_allclose(l_["lps_max"], exp_l_max, atol=0.02)
    assert r["status"] == l_["status"] == "proposed" and r["updated_by"] == "clin"
    # voxel indices are stored as well: the voxel centres inside the box
    assert r["voxel_min"][2] == k_lo and r["voxel_max"][2] == k_hi
    assert data["box_status"] == "proposed"

    # undo (u) restores the R box before its last change, as a new version
    page.keyboard.press("r")
    page.keyboard.press("u")
    page.wait_for_function(f"window.viewer.store.boxes.R.version === {r['version'] + 1}")
    history = page.request.get(f"{live_server.url}/api/series/{series.pk}/boxes/R/history/").json()
    assert history[0]["version"] == r["version"] + 1
    before = next(h for h in history if h["version"] == r["version"] - 1)
    assert page.evaluate("window.viewer.store.boxes.R.lps_max") == before["lps_max"]


def test_confirming_a_proposal_and_going_to_the_next_scan(live_server, browser_page, browser_login, ct_series, users):
    from annotations.services.boxes import save_box
    from annotations.models import Series

    page = browser_page
    first = ct_series(members=[users["clinician"]], patient="P001")
    second = ct_series(dataset=first.dataset, patient="P002")
    for s in (first, second):
        save_box(s, "R", [-60, -200, 150], [-10, -150, 200], source="landmarks")
        save_box(s, "L", [20, -200, 150], [70, -150, 200], source="landmarks")
    from tests.annotations.test_api_viewer import make_prediction

    make_prediction(first, "abnormal", 0.8)
    browser_login(page, "clin")
    page.goto(f"{live_server.url}/datasets/{first.dataset.pk}/")
    assert page.locator("[data-count=proposed]").inner_text() == "2"
    page.keyboard.press("Enter")
    page.wait_for_function("window.viewer && window.viewer.ready")
    assert page.url.endswith(f"/series/{first.pk}/")
    # the verdict and the per-slice score strip are shown; a click on the strip goes to that slice
    assert "abnormal" in page.locator("#verdict").inner_text().lower()
    strip = page.locator("#strip").bounding_box()
    page.mouse.click(strip["x"] + 5, strip["y"] + 2)
    assert page.evaluate("window.viewer.shared.position[2]") == first.volume.shape[0] - 1
    shot(page, "viewer-proposal")
    page.keyboard.press("Shift+C")
    page.wait_for_function("window.viewer.store.boxes.R.status === 'confirmed' && window.viewer.store.boxes.L.status === 'confirmed'")
    first.refresh_from_db()
    assert first.box_status == Series.BoxStatus.CONFIRMED
    assert {b.status for b in first.boxes.all()} == {"confirmed"}
    assert first.boxes.get(side="R").lps_min == [-60, -200, 150]  # confirming keeps the coordinates
    page.keyboard.press("n")
    page.wait_for_url(f"**/series/{second.pk}/")
    page.goto(f"{live_server.url}/datasets/{first.dataset.pk}/")
    assert page.locator("[data-count=confirmed]").inner_text() == "1"
    shot(page, "worklist")


def test_a_second_editor_gets_409_and_can_reload(live_server, browser_page, browser_login, ct_series, users, client):
    from annotations.services.boxes import save_box

    page = browser_page
    series = ct_series(members=[users["clinician"], users["lead"]])
    save_box(series, "R", [-60, -200, 150], [-10, -150, 200], source="landmarks")
    browser_login(page, "clin")
    open_viewer(page, live_server, series, "?z_mm=175")
    assert page.evaluate("window.viewer.sliceZ(window.viewer.shared.position[2])") == pytest.approx(175, abs=1.5)
    # someone else saves a newer version through the API
    client.force_login(users["lead"])
    resp = client.put(f"/api/series/{series.pk}/boxes/R/", json.dumps(
        {"lps_min": [-70, -200, 150], "lps_max": [-10, -150, 200], "version": 1}), content_type="application/json")
    assert resp.status_code == 200 and resp.json()["version"] == 2
    # the page still edits version 1: move the box; the autosave is refused with 409 and the page says so
    rect = page.evaluate("""() => { const v = window.viewer.views.axial, b = window.viewer.store.boxes.R;
        const [h1, v1] = v.lpsToMm(b.lps_min), [h2, v2] = v.lpsToMm(b.lps_max);
        return v.mmToCanvas((h1 + h2) / 2, (v1 + v2) / 2); }""")
    drag(page, "axial", rect, (rect[0] + 20, rect[1]))
    page.locator("#conflict").wait_for(state="visible")
    assert "changed by someone else" in page.locator("#conflict-text").inner_text()
    assert "lead" in page.locator("#conflict-text").inner_text()
    series.boxes.get(side="R").refresh_from_db()
    box = series.boxes.get(side="R")
    assert box.version == 2 and box.lps_min == [-70, -200, 150]  # nothing overwritten silently
    shot(page, "viewer-conflict")
    page.click("#conflict-reload")
    assert page.evaluate("window.viewer.store.boxes.R.version") == 2
    assert page.evaluate("window.viewer.store.boxes.R.lps_min") == [-70, -200, 150]
    # an edit from the reloaded version saves normally
    drag(page, "axial", rect, (rect[0] + 10, rect[1]))
    page.wait_for_function("window.viewer.store.boxes.R.version === 3 && !window.viewer.store.boxes.R.dirty")
    # another conflict, this time the clinician keeps their own box: it is saved over version 4 as version 5
    resp = client.put(f"/api/series/{series.pk}/boxes/R/", json.dumps(
        {"lps_min": [-80, -200, 150], "lps_max": [-10, -150, 200], "version": 3}), content_type="application/json")
    assert resp.json()["version"] == 4
    drag(page, "axial", (rect[0] + 10, rect[1]), (rect[0] + 10, rect[1] + 12))
    page.locator("#conflict").wait_for(state="visible")
    mine = page.evaluate("window.viewer.store.boxes.R.lps_min")
    page.click("#conflict-keep")
    page.wait_for_function("window.viewer.store.boxes.R.version === 5 && !window.viewer.store.boxes.R.dirty")
    box = series.boxes.get(side="R")
    assert box.version == 5 and box.lps_min == pytest.approx(mine)
    assert [v.version for v in box.versions.all()] == [5, 4, 3, 2, 1]  # every state kept


def test_clinician_cannot_open_another_dataset(live_server, browser_page, browser_login, ct_series, users):
    page = browser_page
    theirs = ct_series(name="other-team", members=[users["lead"]])
    browser_login(page, "clin")
    assert page.goto(f"{live_server.url}/series/{theirs.pk}/").status == 404
    assert page.goto(f"{live_server.url}/datasets/{theirs.dataset.pk}/").status == 404
    for url in (f"/api/series/{theirs.pk}/volume/data/", f"/api/series/{theirs.pk}/boxes/",
                f"/api/datasets/{theirs.dataset.pk}/worklist/"):
        assert page.request.get(f"{live_server.url}{url}").status == 404
    resp = page.request.put(f"{live_server.url}/api/series/{theirs.pk}/boxes/R/", data={"lps_min": [0, 0, 0],
                            "lps_max": [1, 1, 1], "version": 0}, headers={"X-CSRFToken": "x"})
    assert resp.status in (403, 404)
    assert not theirs.boxes.exists()


def test_a_volume_stored_in_another_axis_order_is_shown_axially(live_server, browser_page, browser_login, ct_series,
                                                                  users, realct):
    """A volume whose voxel axes are stored as (x, z, y) still shows axial slices with R on the viewer's left and
    anterior at the top, each pixel windowed from the HU at its LPS position."""
    from inference.ml.geometry import lps_to_voxel
    from inference.ml.volume import Volume, load_nifti

    orig = load_nifti(realct["example_ct_sm"])
    array = np.ascontiguousarray(orig.array.transpose(1, 0, 2))  # [k, j, i] -> [j, k, i]: new (i, j, k) = (i, k, j)
    affine = orig.affine[:, [0, 2, 1, 3]]
    series = ct_series(members=[users["clinician"]], volume=Volume(array, affine))
    page = browser_page
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    assert page.evaluate("window.viewer.views.axial.p.fixed") == 1  # the stored axis along z
    assert page.evaluate("window.viewer.views.axial.depth") == orig.shape[0]
    probe = """([x, y]) => { const v = window.viewer.views.axial; const ijk = v.canvasToVoxel(x, y).map(Math.round);
        return { ijk, gray: v.pixels[ijk[v.p.row[0]] * v.w + ijk[v.p.col[0]]] & 0xff }; }"""
    w = page.locator("#axial").bounding_box()["width"]
    left, right = page.evaluate(probe, [w / 2 - 100, 400]), page.evaluate(probe, [w / 2 + 100, 400])
    lps_left = voxel_to_lps(affine, left["ijk"])
    lps_right = voxel_to_lps(affine, right["ijk"])
    assert lps_left[0] < lps_right[0]  # patient right (smaller x) on the viewer's left
    top, bottom = page.evaluate(probe, [w / 2, 150]), page.evaluate(probe, [w / 2, 600])
    assert voxel_to_lps(affine, top["ijk"])[1] < voxel_to_lps(affine, bottom["ijk"])[1]  # anterior at the top
    for sample in (left, right, top, bottom):
        i, j, k = np.rint(lps_to_voxel(orig.affine, voxel_to_lps(affine, sample["ijk"]))).astype(int)
        hu = float(orig.array[k, j, i])
        assert sample["gray"] == int(np.clip((hu - (40 - 200)) * 255 / 400, 0, 255))
    shot(page, "viewer-permuted")
