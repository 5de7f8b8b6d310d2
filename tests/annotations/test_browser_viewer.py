"""In Chromium, on the real TotalSegmentator CT: what the viewer shows and where a pointer lands are exact.

Screen positions are computed here, independently of the page's code, from the Python geometry
(``inference.ml.geometry``) and the view's documented state (zoom in CSS px per mm, centre in plane mm, canvas
size): a view shows voxel (i, j, k) at plane mm ``h = hs * p``, ``v = vs * q`` (p, q the voxel's indices along the
axes shown left-to-right and top-to-bottom; |hs|, |vs| its spacings, signs putting patient right on the left,
anterior and superior up), and screen ``x = (h - centre_h) * zoom + width / 2``. Checked at 1280x800, 1440x900,
1920x1080, device pixel ratio 2 and after resizing: each canvas is drawn at the aspect it is shown at, a millimetre
square is square, the pixel at a point shows that voxel's grey, and boxes dragged, drawn (also inside another box),
moved and resized between known millimetre positions are stored there; undo/redo across five versions; the HU
readout is the volume's value; the ruler measures a known distance; click-to-navigate, cine, invert, presets, the
corner overlay, the verdict strip and findings written as text.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from inference.ml.geometry import lps_to_voxel, spacing_of, voxel_to_lps
from tests.plugins.browser import TEST_CONTEXT

pytestmark = [pytest.mark.browser]
SHOTS = os.environ.get("VIEWER_SCREENSHOTS")  # a folder: save screenshots there to look at them
PLANES = {  # plane: (LPS axis across it, LPS axis shown left-to-right, LPS axis top-to-bottom, its screen sign)
    "axial": (2, 0, 1, 1), "coronal": (1, 0, 2, -1), "sagittal": (0, 1, 2, -1),
}
R_BOX = ([-60.0, -200.0, 150.0], [-10.0, -150.0, 200.0])  # 50 x 50 x 50 mm, patient right
L_BOX = ([20.0, -200.0, 150.0], [70.0, -150.0, 200.0])


# ------------------------------------------------------------------ the mapping, computed here
class Geometry:
    """The view mapping of one volume, from its affine (Python geometry) and the page's view state."""

    def __init__(self, page, affine):
        self.page = page
        self.affine = np.asarray(affine, float)
        self.spacing = spacing_of(self.affine)

    def axes(self, plane):
        fixed_l, col_l, row_l, sign = PLANES[plane]
        a = self.affine[:3, :3]
        col_ax, row_ax = int(np.argmax(np.abs(a[col_l]))), int(np.argmax(np.abs(a[row_l])))
        hs = np.sign(a[col_l, col_ax]) * self.spacing[col_ax]
        vs = sign * np.sign(a[row_l, row_ax]) * self.spacing[row_ax]
        return col_ax, row_ax, hs, vs

    def state(self, plane):
        return self.page.evaluate(f"window.viewer.views.{plane}.t.state()")

    def screen_of(self, plane, lps):
        """CSS px in the canvas where LPS point ``lps`` is shown on ``plane``."""
        col_ax, row_ax, hs, vs = self.axes(plane)
        st = self.state(plane)
        assert (st["hs"], st["vs"]) == pytest.approx((hs, vs))
        ijk = lps_to_voxel(self.affine, lps)
        h, v = hs * ijk[col_ax], vs * ijk[row_ax]
        return ((h - st["centre"][0]) * st["zoom"] + st["cssW"] / 2, (v - st["centre"][1]) * st["zoom"] + st["cssH"] / 2)

    def slice_lps(self, plane):
        """The LPS coordinate of the view's current slice along its own axis."""
        fixed_l = PLANES[plane][0]
        pos = self.page.evaluate("window.viewer.shared.position")
        return voxel_to_lps(self.affine, pos)[fixed_l]

    def on_slice(self, plane, a, b):
        """LPS point with in-plane coordinates (a, b) (the view's column and row LPS axes) on the current slice."""
        fixed_l, col_l, row_l, _ = PLANES[plane]
        p = [0.0, 0.0, 0.0]
        p[fixed_l], p[col_l], p[row_l] = self.slice_lps(plane), a, b
        return p


def open_viewer(page, live_server, series, query: str = ""):
    page.goto(f"{live_server.url}/series/{series.pk}/{query}")
    page.wait_for_function("window.viewer && window.viewer.ready")
    return page


def origin(page, plane):
    box = page.locator(f"#{plane}").bounding_box()
    return box["x"], box["y"]


def drag(page, plane, a, b, steps: int = 6):
    ox, oy = origin(page, plane)
    page.mouse.move(ox + a[0], oy + a[1])
    page.mouse.down()
    page.mouse.move(ox + b[0], oy + b[1], steps=steps)
    page.mouse.up()


def click(page, plane, p):
    ox, oy = origin(page, plane)
    page.mouse.click(ox + p[0], oy + p[1])


def wait_saved(page):
    page.wait_for_function(
        "['R','L'].every(s => { const b = window.viewer.store.boxes[s]; return !b || (!b.dirty && b.version > 0); })")
    page.evaluate("Promise.all([window.viewer.store.saving.R, window.viewer.store.saving.L])")


def api_box(page, live_server, series, side):
    return page.request.get(f"{live_server.url}/api/series/{series.pk}/boxes/{side}/").json()


def grey(hu, level, width, invert=False):
    g = int(np.clip((hu - (level - width / 2)) * (255 / width), 0, 255))
    return 255 - g if invert else g


def pixel(page, plane, x, y):
    """RGB of the displayed canvas pixel under CSS point (x, y)."""
    return page.evaluate("""([id, x, y]) => { const c = document.getElementById(id), r = c.getBoundingClientRect();
        const d = c.getContext('2d').getImageData(Math.floor(x * c.width / r.width), Math.floor(y * c.height / r.height), 1, 1).data;
        return [d[0], d[1], d[2]]; }""", [plane, x, y])


def shot(page, name: str):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def boxed_series(ct_series, users, **kw):
    from annotations.services.boxes import save_box

    series = ct_series(members=[users["clinician"], users["lead"]], **kw)
    save_box(series, "R", *R_BOX, source="landmarks")
    save_box(series, "L", *L_BOX, source="landmarks")
    return series


# ------------------------------------------------------------------ what is shown
def check_canvases(page, geo, hu_array, label):
    """Every canvas: backing store = displayed size x devicePixelRatio, same aspect; the R box (50 x 50 mm) drawn
    square; the pixel at several voxel centres shows that voxel's grey."""
    page.wait_for_function("""() => ['axial', 'coronal', 'sagittal'].every(id => {
        const c = document.getElementById(id), r = c.getBoundingClientRect(), d = devicePixelRatio;
        return Math.abs(c.width - r.width * d) <= 1 && Math.abs(c.height - r.height * d) <= 1; })""")
    page.evaluate("window.viewer.renderAll()")
    dpr = page.evaluate("devicePixelRatio")
    for plane in PLANES:
        size = page.evaluate(f"""() => {{ const c = document.getElementById('{plane}'), r = c.getBoundingClientRect();
            return [c.width, c.height, r.width, r.height]; }}""")
        cw, ch, rw, rh = size
        assert abs(cw - rw * dpr) <= 1 and abs(ch - rh * dpr) <= 1, (label, plane, size)
        assert (cw / ch) / (rw / rh) == pytest.approx(1, abs=0.005), (label, plane, size)
        st = geo.state(plane)
        assert (st["cssW"], st["cssH"]) == pytest.approx((rw, rh), abs=0.01)
        # the pixel at voxel centres shows that voxel (nearest neighbour at these zooms: exactly its grey)
        level, width = page.evaluate("[window.viewer.state.level, window.viewer.state.width]")
        pos = page.evaluate("window.viewer.shared.position")
        col_ax, row_ax, _, _ = geo.axes(plane)
        checked = 0
        for fp, fq in ((0.3, 0.4), (0.5, 0.5), (0.62, 0.35), (0.45, 0.7), (0.7, 0.6)):
            ijk = list(pos)
            dims = hu_array.shape[::-1]
            ijk[col_ax], ijk[row_ax] = int(fp * dims[col_ax]), int(fq * dims[row_ax])
            x, y = geo.screen_of(plane, voxel_to_lps(geo.affine, ijk))
            rgb = pixel(page, plane, x, y)
            if not rgb[0] == rgb[1] == rgb[2]:
                continue  # an overlay line passes there
            assert rgb[0] == grey(hu_array[ijk[2], ijk[1], ijk[0]], level, width), (label, plane, ijk, rgb)
            checked += 1
        assert checked >= 3, (label, plane)
    # a millimetre square is drawn square: the R box's edges on the rows/columns through its centre
    centre = [(a + b) / 2 for a, b in zip(*R_BOX)]
    cx, cy = geo.screen_of("axial", centre)
    zoom = geo.state("axial")["zoom"]
    edges = page.evaluate("""([cx, cy]) => { const c = document.getElementById('axial'), r = c.getBoundingClientRect();
        const sx = c.width / r.width, sy = c.height / r.height, ctx = c.getContext('2d');
        const blue = (d, o) => d[o + 2] - d[o] > 80;  // the R box's colour, not grey
        const band = Math.round(8 * sx);  // rows (columns) around the centre: the dashes of the edge are there
        const rows = ctx.getImageData(0, Math.floor(cy * sy) - band, c.width, 2 * band).data;
        const cols = ctx.getImageData(Math.floor(cx * sx) - band, 0, 2 * band, c.height).data;
        const xs = [], ys = [];
        for (let p = 0; p < rows.length / 4; p++) if (blue(rows, 4 * p)) xs.push(p % c.width);
        for (let p = 0; p < cols.length / 4; p++) if (blue(cols, 4 * p)) ys.push(Math.floor(p / (2 * band)));
        return [Math.min(...xs) / sx, Math.max(...xs) / sx, Math.min(...ys) / sy, Math.max(...ys) / sy]; }""", [cx, cy])
    width_px, height_px = edges[1] - edges[0], edges[3] - edges[2]
    assert width_px == pytest.approx(height_px, abs=1.5), (label, edges)
    assert width_px == pytest.approx(50 * zoom, abs=2.5), (label, edges, zoom)


def test_every_canvas_is_shown_at_its_drawn_aspect_at_common_sizes_pixel_ratio_2_and_after_resizing(
        live_server, browser_chromium, browser_login, ct_series, users, realct):
    from inference.ml.volume import load_nifti

    series = boxed_series(ct_series, users)
    hu = load_nifti(realct["example_ct"]).array
    for dpr, sizes in ((1, [(1280, 800), (1440, 900), (1920, 1080), (1280, 800)]), (2, [(1440, 900), (1280, 800)])):
        context = browser_chromium.new_context(viewport={"width": sizes[0][0], "height": sizes[0][1]},
                                               device_scale_factor=dpr, **TEST_CONTEXT)
        page = context.new_page()
        page.set_default_timeout(20_000)
        browser_login(page, "clin")
        open_viewer(page, live_server, series)
        page.keyboard.press("l")  # the R box without handles: plain edges to measure
        geo = Geometry(page, series.volume.affine)
        for n, (w, h) in enumerate(sizes):
            label = f"{w}x{h}@{dpr}{' after resize' if n else ''}"
            if n:
                page.set_viewport_size({"width": w, "height": h})  # resizing the window redraws every canvas
            check_canvases(page, geo, hu, label)
            shot(page, f"viewer-{w}x{h}-dpr{dpr}")
            # at this size too, an L box drawn between known millimetres (axial, then its z-range on the coronal
            # view) is stored there
            page.keyboard.press("l")
            for plane, (a, b) in (("axial", ((15.0 + n, -215.0), (62.0, -160.0 - n))),
                                  ("coronal", ((15.0 + n, 140.0 + n), (62.0, 205.0)))):
                before = page.evaluate("window.viewer.store.boxes.L.version")
                page.keyboard.press("d")
                drag(page, plane, geo.screen_of(plane, geo.on_slice(plane, *a)),
                     geo.screen_of(plane, geo.on_slice(plane, *b)))
                page.wait_for_function(f"window.viewer.store.boxes.L.version > {before}")
                wait_saved(page)
                box = api_box(page, live_server, series, "L")
                _, col_l, row_l, _ = PLANES[plane]
                got = [box["lps_min"][col_l], box["lps_max"][col_l], box["lps_min"][row_l], box["lps_max"][row_l]]
                want = [min(a[0], b[0]), max(a[0], b[0]), min(a[1], b[1]), max(a[1], b[1])]
                assert got == pytest.approx(want, abs=0.75), (label, plane, got, want)  # voxels are 3 mm here
        context.close()


# ------------------------------------------------------------------ where a pointer lands
def test_boxes_drawn_moved_and_resized_in_each_view_are_stored_at_those_millimetres(
        live_server, browser_chromium, browser_login, ct_series, users):
    series = boxed_series(ct_series, users)
    context = browser_chromium.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=2,
                                           **TEST_CONTEXT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    geo = Geometry(page, series.volume.affine)
    voxel = geo.spacing  # [i, j, k] mm; the axes are x, y, z here

    # draw in each view: a box between two known millimetre positions of that view's plane
    targets = {"axial": ((-70.0, -215.0), (-25.0, -160.0)),   # x, y
               "coronal": ((-75.0, 140.0), (-20.0, 205.0)),   # x, z
               "sagittal": ((-210.0, 145.0), (-140.0, 190.0))}  # y, z
    for plane, (a, b) in targets.items():
        _, col_l, row_l, _ = PLANES[plane]
        before = api_box(page, live_server, series, "R")
        page.keyboard.press("r")
        page.keyboard.press("d")
        pa, pb = geo.on_slice(plane, *a), geo.on_slice(plane, *b)
        drag(page, plane, geo.screen_of(plane, pa), geo.screen_of(plane, pb))
        assert page.evaluate("window.viewer.state.mode") == "select"  # draw mode ends with the box
        wait_saved(page)
        box = api_box(page, live_server, series, "R")
        assert box["version"] == before["version"] + 1, plane
        for axis, (lo, hi) in ((col_l, (a[0], b[0])), (row_l, (a[1], b[1]))):
            assert box["lps_min"][axis] == pytest.approx(min(lo, hi), abs=voxel[axis]), (plane, axis, box)
            assert box["lps_max"][axis] == pytest.approx(max(lo, hi), abs=voxel[axis]), (plane, axis, box)
            assert box["lps_min"][axis] == pytest.approx(min(lo, hi), abs=0.75), (plane, axis)  # well inside
        # the coordinate across the view is kept from the box the slice passes through
        fixed = PLANES[plane][0]
        assert box["lps_min"][fixed] == pytest.approx(before["lps_min"][fixed])
        assert box["lps_max"][fixed] == pytest.approx(before["lps_max"][fixed])
        shot(page, f"viewer-drawn-{plane}")

    # draw mode pressed inside a box draws (the L box here): a new R box, the L box untouched
    page.evaluate("() => { const v = window.viewer; v.navigateTo(v.vol.lpsToVoxel(-35, -175, 175)); }")
    l_before = api_box(page, live_server, series, "L")
    inside_l = geo.on_slice("axial", 40.0, -180.0)
    end = geo.on_slice("axial", -5.0, -140.0)
    page.keyboard.press("r")
    page.keyboard.press("d")
    drag(page, "axial", geo.screen_of("axial", inside_l), geo.screen_of("axial", end))
    wait_saved(page)
    r_box, l_after = api_box(page, live_server, series, "R"), api_box(page, live_server, series, "L")
    assert l_after["version"] == l_before["version"] and l_after["lps_min"] == l_before["lps_min"]
    assert [r_box["lps_min"][0], r_box["lps_max"][0]] == pytest.approx([-5.0, 40.0], abs=0.75)
    assert [r_box["lps_min"][1], r_box["lps_max"][1]] == pytest.approx([-180.0, -140.0], abs=0.75)

    # select mode: dragging the body moves it, dragging an edge resizes it, in each view
    for plane in PLANES:
        _, col_l, row_l, sign = PLANES[plane]
        box = api_box(page, live_server, series, "R")
        centre = [(a + b) / 2 for a, b in zip(box["lps_min"], box["lps_max"])]
        page.evaluate(f"() => {{ const v = window.viewer; v.navigateTo(v.vol.lpsToVoxel(...{centre})); }}")
        start = geo.on_slice(plane, centre[col_l], centre[row_l])
        goal = geo.on_slice(plane, centre[col_l] + 12.0, centre[row_l] + 9.0)
        drag(page, plane, geo.screen_of(plane, start), geo.screen_of(plane, goal))
        wait_saved(page)
        moved = api_box(page, live_server, series, "R")
        for axis, d in ((col_l, 12.0), (row_l, 9.0)):
            assert moved["lps_min"][axis] - box["lps_min"][axis] == pytest.approx(d, abs=0.75), (plane, axis)
            assert moved["lps_max"][axis] - box["lps_max"][axis] == pytest.approx(d, abs=0.75), (plane, axis)
        # the edge at the column axis' max moves out 10 mm (right edge on axial/coronal, posterior on sagittal)
        edge = geo.on_slice(plane, moved["lps_max"][col_l], (moved["lps_min"][row_l] + moved["lps_max"][row_l]) / 2)
        out = geo.on_slice(plane, moved["lps_max"][col_l] + 10.0, edge[row_l])
        drag(page, plane, geo.screen_of(plane, edge), geo.screen_of(plane, out))
        wait_saved(page)
        resized = api_box(page, live_server, series, "R")
        assert resized["lps_max"][col_l] == pytest.approx(moved["lps_max"][col_l] + 10.0, abs=0.75), plane
        assert resized["lps_min"][col_l] == pytest.approx(moved["lps_min"][col_l]), plane
        assert resized["lps_min"][row_l] == pytest.approx(moved["lps_min"][row_l]), plane
    shot(page, "viewer-moved")
    context.close()


def test_undo_and_redo_walk_five_versions_and_the_panel_restores_any(live_server, browser_page, browser_login,
                                                                     ct_series, users):
    page = browser_page
    series = boxed_series(ct_series, users)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    geo = Geometry(page, series.volume.affine)
    # four more versions of the R box: its right (patient-left, x max) edge dragged 6 mm at a time
    for _ in range(4):
        box = page.evaluate("window.viewer.store.boxes.R")
        edge = geo.on_slice("axial", box["lps_max"][0], -175.0)
        drag(page, "axial", geo.screen_of("axial", edge), geo.screen_of("axial", geo.on_slice("axial", box["lps_max"][0] + 6, -175.0)))
        wait_saved(page)
    history = page.request.get(f"{live_server.url}/api/series/{series.pk}/boxes/R/history/").json()
    assert [h["version"] for h in history] == [5, 4, 3, 2, 1]
    states = {h["version"]: h["lps_max"] for h in history}
    assert states[5][0] == pytest.approx(-10 + 24, abs=1.0)
    for back in (4, 3, 2, 1):  # u: one state back each time
        page.keyboard.press("u")
        page.wait_for_function(f"window.viewer.store.boxes.R.version === {5 + 5 - back}")
        assert page.evaluate("window.viewer.store.boxes.R.lps_max") == states[back]
    assert page.locator("#undo").is_disabled()
    for forward in (2, 3, 4, 5):  # Shift-U (and Ctrl-Y): forward again
        page.keyboard.press("Shift+U" if forward % 2 else "Control+y")
        page.wait_for_function(f"window.viewer.store.boxes.R.version === {9 + forward - 1}")
        assert page.evaluate("window.viewer.store.boxes.R.lps_max") == states[forward]
    assert page.locator("#redo").is_disabled()
    # the panel lists every version with who, when and what changed, and restores any of them
    page.wait_for_function("document.querySelectorAll('#box-versions li').length === 13")
    items = page.locator("#box-versions li")
    assert "v13" in items.nth(0).inner_text() and "redo → v5" in items.nth(0).inner_text()
    assert "clin" in items.nth(0).inner_text()
    assert "left face L 6.0 mm" in page.locator("#box-versions li[data-version='2']").inner_text()
    assert "created (landmarks)" in page.locator("#box-versions li[data-version='1']").inner_text()
    page.locator("#box-versions li[data-version='2'] button").click()
    page.wait_for_function("window.viewer.store.boxes.R.version === 14")
    assert page.evaluate("window.viewer.store.boxes.R.lps_max") == states[2]
    shot(page, "viewer-versions")


# ------------------------------------------------------------------ reading tools
def test_reading_tools_hu_ruler_navigation_cine_invert_presets_overlay_and_strip(
        live_server, browser_page, browser_login, ct_series, users, realct):
    from inference.ml.volume import load_nifti
    from tests.annotations.test_api_viewer import make_prediction

    page = browser_page
    series = boxed_series(ct_series, users, description="ABD <b>PV</b> 3mm")
    study = series.study
    study.study_date = "2024-01-02"
    study.save()
    series.convolution_kernel, series.slice_thickness_mm = "B30f", 3.0
    series.save()
    make_prediction(series, "abnormal", 0.8)
    hu = load_nifti(realct["example_ct"]).array
    affine = np.asarray(series.volume.affine)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    geo = Geometry(page, affine)
    nk = hu.shape[0]

    # HU under the cursor equals the volume's value at that voxel, on every view
    for plane, point in (("axial", (-30.0, -180.0)), ("coronal", (40.0, 160.0)), ("sagittal", (-120.0, 300.0))):
        p = geo.on_slice(plane, *point)
        i, j, k = np.rint(lps_to_voxel(affine, p)).astype(int)
        p = voxel_to_lps(affine, [i, j, k])  # the voxel's centre
        ox, oy = origin(page, plane)
        x, y = geo.screen_of(plane, p)
        page.mouse.move(ox + x, oy + y)
        readout = page.locator("#hu")
        assert readout.get_attribute("data-ijk") == f"{i},{j},{k}", plane
        assert int(readout.get_attribute("data-hu")) == hu[k, j, i], plane
        assert f"HU {hu[k, j, i]}" in readout.inner_text()

    # the ruler measures a known distance (60 mm along x, 80 mm along y: 100 mm)
    page.keyboard.press("m")
    a, b = geo.on_slice("axial", -80.0, -230.0), geo.on_slice("axial", -20.0, -150.0)
    drag(page, "axial", geo.screen_of("axial", a), geo.screen_of("axial", b))
    assert float(page.locator("#ruler-readout").get_attribute("data-mm")) == pytest.approx(100.0, abs=0.75)
    assert "Ruler 100" in page.locator("#ruler-readout").inner_text() or "Ruler 99" in page.locator("#ruler-readout").inner_text()
    a, b = geo.on_slice("coronal", -50.0, 150.0), geo.on_slice("coronal", -50.0, 195.0)  # 45 mm craniocaudal
    drag(page, "coronal", geo.screen_of("coronal", a), geo.screen_of("coronal", b))
    assert float(page.locator("#ruler-readout").get_attribute("data-mm")) == pytest.approx(45.0, abs=0.75)
    shot(page, "viewer-ruler")
    page.keyboard.press("Escape")
    assert page.evaluate("window.viewer.state.mode") == "select"

    # click-to-navigate: a click on the coronal view moves the axial and sagittal views to that point
    q = geo.on_slice("coronal", 30.0, 250.0)
    click(page, "coronal", geo.screen_of("coronal", q))
    i, _, k = np.rint(lps_to_voxel(affine, q)).astype(int)
    pos = page.evaluate("window.viewer.shared.position")
    assert (pos[0], pos[2]) == (i, k)
    assert geo.slice_lps("axial") == pytest.approx(voxel_to_lps(affine, [0, 0, k])[2])

    # scroll and keys; presets on 1-5 (and 6); invert flips the grey of every pixel
    ox, oy = origin(page, "axial")
    page.mouse.move(ox + 100, oy + 100)
    # wheel down, ArrowDown and PageDown go the same way, to the next image in a PACS's order: on the axial view
    # towards the feet (k - 1 on the store's LPS axes); wheel up, ArrowUp and PageUp the other way
    assert 12 <= k < nk - 12
    page.mouse.wheel(0, 100)
    page.wait_for_function(f"window.viewer.shared.position[2] === {k - 1}")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("window.viewer.shared.position[2]") == k - 2
    page.keyboard.press("PageDown")
    assert page.evaluate("window.viewer.shared.position[2]") == k - 12
    page.keyboard.press("PageUp")
    assert page.evaluate("window.viewer.shared.position[2]") == k - 2
    page.keyboard.press("ArrowUp")
    assert page.evaluate("window.viewer.shared.position[2]") == k - 1
    page.mouse.wheel(0, -100)
    page.wait_for_function(f"window.viewer.shared.position[2] === {k}")
    page.keyboard.press("Home")  # the first image: the most superior axial slice
    assert page.evaluate("window.viewer.shared.position[2]") == nk - 1
    page.keyboard.press("End")
    assert page.evaluate("window.viewer.shared.position[2]") == 0
    page.evaluate(f"window.viewer.setSlice({k})")  # back where the checks below read the image
    presets = {"1": (40, 400), "2": (40, 350), "3": (30, 150), "4": (400, 1800), "5": (-600, 1500), "6": (100, 600)}
    for key, wl in presets.items():
        page.keyboard.press(key)
        assert tuple(page.evaluate("[window.viewer.state.level, window.viewer.state.width]")) == wl
    drag(page, "axial", (300, 300), (340, 280))  # drag: window/level
    assert page.evaluate("[window.viewer.state.level, window.viewer.state.width]") == [100 + 40, 600 + 160]
    page.keyboard.press("1")
    probe = voxel_to_lps(affine, [60, 50, k])
    x, y = geo.screen_of("axial", probe)
    plain = pixel(page, "axial", x, y)[0]
    page.keyboard.press("i")
    assert pixel(page, "axial", x, y)[0] == 255 - plain == grey(hu[k, 50, 60], 40, 400, invert=True)
    page.keyboard.press("i")

    # cine plays the slices and stops
    page.mouse.move(ox + 100, oy + 100)
    start = page.evaluate("window.viewer.shared.position[2]")
    page.keyboard.press(" ")
    page.wait_for_function(f"(() => {{ const k = window.viewer.shared.position[2]; return (k - {start} + {nk}) % {nk} >= 3; }})()")
    page.keyboard.press(" ")
    stopped = page.evaluate("window.viewer.shared.position[2]")
    page.wait_for_timeout(300)
    assert page.evaluate("window.viewer.shared.position[2]") == stopped

    # the corner overlay: pseudonym, study date, series description (as text), slice position and thickness, kernel
    overlay = " ".join(page.locator(f"#ov-{c}").inner_text() for c in ("tl", "tr", "bl"))
    z = voxel_to_lps(affine, [0, 0, stopped])[2]
    for expected in ("P001", "2024-01-02", "ABD <b>PV</b> 3mm", "Kernel B30f", f"z {z:.1f} mm", "Thickness 3.00 mm",
                     f"slice {nk - stopped}/{nk}"):  # numbered head to feet, as listed
        assert expected in overlay, (expected, overlay)
    assert page.locator("#ov-tr b").count() == 0  # DICOM text is text, not markup

    # the verdict strip: a z axis in mm, a legend, the flagged slice marked, the current slice's score
    strip = page.locator("#strip")
    assert strip.locator("text", has_text="image ≥ 0.5").count() == 1 and strip.locator("text", has_text="flagged slice").count() == 1
    assert strip.locator("text", has_text="z mm").count() == 1 and strip.locator(".strip-flag").count() == 1
    assert float(strip.locator(".strip-flag").get_attribute("data-z")) == pytest.approx(250.3)
    page.evaluate("window.viewer.setSlice(window.viewer.axialSliceOfZ(250.3))")
    assert strip.get_attribute("data-current-score") == "0.9" and "here 0.90" in strip.inner_text()
    box = strip.bounding_box()
    page.mouse.click(box["x"] + 60, box["y"] + 2)  # the top of the strip: the most superior slice
    assert page.evaluate("window.viewer.shared.position[2]") == nk - 1
    # the help overlay lists the keys
    page.keyboard.press("?")
    help_text = page.locator("#help").inner_text()
    for words in ("next unconfirmed scan", "undo", "redo", "ruler", "cine", "invert", "Lung", "lesion", "Esc"):
        assert words in help_text, words
    shot(page, "viewer-help")
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()


def test_the_strip_of_a_per_gland_verdict_reads_out_each_gland_and_draws_its_flag_line(
        live_server, browser_page, browser_login, ct_series, users):
    """A per-gland verdict scores both glands' images at the same z. The strip merged them into one list: at a slice
    where L scored 0.90 and R 0.10 it read "here 0.10" (the first of two equal-z entries) and drew one bar over the
    other; its line and legend said 0.5 while such a verdict flags images from the operating value (0.35 here), so a
    flagged R image of 0.40 was coloured "image < 0.5". Now: both glands read out, a bar half each, the line at the
    operating value."""
    from tests.annotations.test_api_viewer import make_prediction

    page = browser_page
    series = boxed_series(ct_series, users)
    p = make_prediction(series, "abnormal", 0.8)
    p.operating_value = 0.35
    p.side_details = {
        "R": {"score": 0.3, "probability": 0.3, "probability_cutoff": 0.35, "verdict": "normal",
              "flagged_slices_mm": [247.3], "slice_scores": [[247.3, 0.4], [250.3, 0.1]]},
        "L": {"score": 0.9, "probability": 0.9, "probability_cutoff": 0.35, "verdict": "abnormal",
              "flagged_slices_mm": [250.3], "slice_scores": [[247.3, 0.2], [250.3, 0.9]]}}
    p.slice_scores = sorted(sc for d in p.side_details.values() for sc in d["slice_scores"])  # as gland_verdict does
    p.flagged_slices_mm = [247.3, 250.3]
    p.save()
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    strip = page.locator("#strip")
    page.evaluate("window.viewer.setSlice(window.viewer.axialSliceOfZ(250.3))")
    assert "here R 0.10 · L 0.90" in strip.inner_text()
    assert strip.get_attribute("data-current-score") == "0.9"
    assert (strip.get_attribute("data-current-score-r"), strip.get_attribute("data-current-score-l")) == ("0.1", "0.9")
    page.evaluate("window.viewer.setSlice(window.viewer.axialSliceOfZ(247.3))")
    assert "here R 0.40 · L 0.20" in strip.inner_text()
    # the line images are flagged from, and each gland's own flags and bars
    assert float(strip.locator(".strip-threshold").get_attribute("data-value")) == pytest.approx(0.35)
    assert strip.locator("text", has_text="image ≥ 0.35").count() == 1 and strip.locator("text", has_text="R above, L below").count() == 1
    flags = {(f.get_attribute("data-side"), float(f.get_attribute("data-z"))) for f in strip.locator(".strip-flag").all()}
    assert flags == {("R", 247.3), ("L", 250.3)}
    bars = {(b.get_attribute("data-side"), float(b.get_attribute("data-z"))): b for b in strip.locator(".strip-bar").all()}
    assert len(bars) == 4 and bars[("R", 247.3)].get_attribute("fill") == bars[("L", 250.3)].get_attribute("fill") != \
        bars[("R", 250.3)].get_attribute("fill")  # R 0.40 is over the 0.35 line, as flagged
    r_bar, l_bar = bars[("R", 250.3)].bounding_box(), bars[("L", 250.3)].bounding_box()
    assert r_bar["y"] + r_bar["height"] == pytest.approx(l_bar["y"], abs=0.5)  # R above L, not drawn over it
    shot(page, "viewer-strip-per-gland")


def test_brackets_set_the_lowest_and_highest_slice_and_refuse_to_turn_the_box_over(
        live_server, browser_page, browser_login, ct_series, users):
    """`[` on a slice above the box's top made the old top the lowest slice and this slice the highest (BoxStore.set
    orders the corners): the box jumped onto the slices above the gland and "saved (version 2)". Now `[` / `]` on
    the far side of the other edge change nothing and say which key sets that edge."""
    page = browser_page
    series = boxed_series(ct_series, users)  # R box z 150..200 mm
    browser_login(page, "clin")
    open_viewer(page, live_server, series)

    def at(z):
        page.evaluate(f"window.viewer.setSlice(window.viewer.axialSliceOfZ({z}))")
        return page.evaluate("window.viewer.sliceZ(window.viewer.views.axial.index)")

    def r_box():
        wait_saved(page)
        return api_box(page, live_server, series, "R")

    z_low = at(170)
    page.keyboard.press("[")
    box = r_box()
    assert (box["lps_min"][2], box["lps_max"][2]) == pytest.approx((z_low, 200.0)) and box["version"] == 2
    z_above = at(215)
    page.keyboard.press("[")  # above the top: refused, nothing saved
    assert "not changed" in page.locator("#save-status").inner_text() and "] sets the highest" in page.locator("#save-status").inner_text()
    assert page.evaluate("window.viewer.store.boxes.R.dirty") in (False, None) and r_box()["version"] == 2
    page.keyboard.press("]")
    box = r_box()
    assert (box["lps_min"][2], box["lps_max"][2]) == pytest.approx((z_low, z_above)) and box["version"] == 3
    at(160)
    page.keyboard.press("]")  # below the bottom: refused
    assert "[ sets the lowest" in page.locator("#save-status").inner_text() and r_box()["version"] == 3


def test_findings_gland_lesion_marker_and_comment_are_saved_and_shown_as_text(
        live_server, browser_page, browser_login, ct_series, users):
    page = browser_page
    series = boxed_series(ct_series, users)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    geo = Geometry(page, series.volume.affine)
    page.keyboard.press("l")
    page.select_option("#gland-L", "not_visualised")
    page.wait_for_function("window.viewer.findings.findings.L && window.viewer.findings.findings.L.version === 1")
    page.keyboard.press("r")
    page.keyboard.press("x")  # lesion marker: a line across the lesion gives its centre and diameter
    a, b = geo.on_slice("axial", -45.0, -180.0), geo.on_slice("axial", -25.0, -180.0)
    drag(page, "axial", geo.screen_of("axial", a), geo.screen_of("axial", b))
    page.wait_for_function("window.viewer.findings.findings.R && window.viewer.findings.findings.R.version === 1")
    evil = '<img src=x onerror="window.pwned=1">lipid-poor, 35 HU'
    page.fill("#comment-R", evil)
    page.locator("#comment-R").blur()
    page.wait_for_function("window.viewer.findings.findings.R.version === 2")
    data = page.request.get(f"{live_server.url}/api/series/{series.pk}/findings/").json()["findings"]
    assert data["L"]["gland"] == "not_visualised" and data["R"]["comment"] == evil
    assert data["R"]["lesion_diameter_mm"] == pytest.approx(20.0, abs=0.75)
    assert data["R"]["lesion_centre_lps"] == pytest.approx([-35.0, -180.0, geo.slice_lps("axial")], abs=0.75)
    assert "20." in page.locator("#lesion-R").inner_text() or "19." in page.locator("#lesion-R").inner_text()
    # reloaded: shown again, the comment as text in the box, no element made from it
    page.reload()
    page.wait_for_function("window.viewer && window.viewer.ready")
    assert page.input_value("#comment-R") == evil and page.input_value("#gland-L") == "not_visualised"
    assert page.locator("#panel img").count() == 0 and page.evaluate("window.pwned") is None
    page.locator("summary#finding-versions-title").click()
    assert "comment" in page.locator("#finding-versions").inner_text()
    shot(page, "viewer-findings")


# ------------------------------------------------------------------ workflow, conflicts, access
def test_confirming_a_proposal_and_going_to_the_next_scan(live_server, browser_page, browser_login, ct_series, users):
    from annotations.models import Series
    from annotations.services.boxes import save_box
    from tests.annotations.test_api_viewer import make_prediction

    page = browser_page
    first = ct_series(members=[users["clinician"]], patient="P001")
    second = ct_series(dataset=first.dataset, patient="P002")
    for s in (first, second):
        save_box(s, "R", *R_BOX, source="landmarks")
        save_box(s, "L", *L_BOX, source="landmarks")
    make_prediction(first, "abnormal", 0.8)
    browser_login(page, "clin")
    page.goto(f"{live_server.url}/datasets/{first.dataset.pk}/")
    assert page.locator("[data-count=proposed]").inner_text() == "2"
    page.keyboard.press("Enter")
    page.wait_for_function("window.viewer && window.viewer.ready")
    assert page.url.endswith(f"/series/{first.pk}/")
    assert "abnormal" in page.locator("#verdict").inner_text().lower()
    # opened at the boxes' level
    assert page.evaluate("window.viewer.sliceZ(window.viewer.shared.position[2])") == pytest.approx(175, abs=1.5)
    page.keyboard.press("Shift+C")
    page.wait_for_function("window.viewer.store.boxes.R.status === 'confirmed' && window.viewer.store.boxes.L.status === 'confirmed'")
    first.refresh_from_db()
    assert first.box_status == Series.BoxStatus.CONFIRMED
    assert first.boxes.get(side="R").lps_min == R_BOX[0]  # confirming keeps the coordinates
    page.keyboard.press("n")
    page.wait_for_url(f"**/series/{second.pk}/")
    page.goto(f"{live_server.url}/datasets/{first.dataset.pk}/")
    assert page.locator("[data-count=confirmed]").inner_text() == "1"
    shot(page, "worklist")


def test_a_second_editor_gets_409_and_can_reload(live_server, browser_page, browser_login, ct_series, users, client):
    from annotations.services.boxes import save_box

    page = browser_page
    series = ct_series(members=[users["clinician"], users["lead"]])
    save_box(series, "R", *R_BOX, source="landmarks")
    browser_login(page, "clin")
    open_viewer(page, live_server, series, "?z_mm=175")
    assert page.evaluate("window.viewer.sliceZ(window.viewer.shared.position[2])") == pytest.approx(175, abs=1.5)
    geo = Geometry(page, series.volume.affine)
    client.force_login(users["lead"])
    resp = client.put(f"/api/series/{series.pk}/boxes/R/", json.dumps(
        {"lps_min": [-70, -200, 150], "lps_max": [-10, -150, 200], "version": 1}), content_type="application/json")
    assert resp.status_code == 200 and resp.json()["version"] == 2
    # the page still edits version 1: move the box; the autosave is refused with 409 and the page says so
    centre = geo.screen_of("axial", geo.on_slice("axial", -35.0, -175.0))
    drag(page, "axial", centre, (centre[0] + 20, centre[1]))
    page.locator("#conflict").wait_for(state="visible")
    assert page.locator("#conflict-text").inner_text() == (
        "R box: This was changed by lead (now version 2). Reload it, or keep yours?")
    box = series.boxes.get(side="R")
    assert box.version == 2 and box.lps_min == [-70, -200, 150]  # nothing overwritten silently
    shot(page, "viewer-conflict")
    page.click("#conflict-reload")
    assert page.evaluate("window.viewer.store.boxes.R.version") == 2
    assert page.evaluate("window.viewer.store.boxes.R.lps_min") == [-70, -200, 150]
    drag(page, "axial", centre, (centre[0] + 10, centre[1]))
    page.wait_for_function("window.viewer.store.boxes.R.version === 3 && !window.viewer.store.boxes.R.dirty")
    resp = client.put(f"/api/series/{series.pk}/boxes/R/", json.dumps(
        {"lps_min": [-80, -200, 150], "lps_max": [-10, -150, 200], "version": 3}), content_type="application/json")
    assert resp.json()["version"] == 4
    drag(page, "axial", (centre[0] + 10, centre[1]), (centre[0] + 10, centre[1] + 12))
    page.locator("#conflict").wait_for(state="visible")
    mine = page.evaluate("window.viewer.store.boxes.R.lps_min")
    page.click("#conflict-keep")
    page.wait_for_function("window.viewer.store.boxes.R.version === 5 && !window.viewer.store.boxes.R.dirty")
    box = series.boxes.get(side="R")
    assert box.version == 5 and box.lps_min == pytest.approx(mine)
    assert [v.version for v in box.versions.all()] == [5, 4, 3, 2, 1]  # every state kept


def test_an_edit_made_after_the_session_ended_is_kept_and_saved_after_signing_in_again(
        live_server, browser_page, browser_login, ct_series, users):
    """The session ends mid-edit (expiry, signing out in another tab): the box moved and the comment typed are not
    dropped or reset to the stored ones; the page says so in words and saves both once signed in again."""
    from annotations.services.boxes import save_box

    page = browser_page
    series = ct_series(members=[users["clinician"]])
    save_box(series, "R", *R_BOX, source="landmarks")
    browser_login(page, "clin")
    open_viewer(page, live_server, series, "?z_mm=175")
    geo = Geometry(page, series.volume.affine)
    page.context.clear_cookies()  # the session has ended
    centre = geo.screen_of("axial", geo.on_slice("axial", -35.0, -175.0))
    drag(page, "axial", centre, geo.screen_of("axial", geo.on_slice("axial", -25.0, -175.0)))
    page.fill("#comment-R", "small nodule, 8 mm")
    page.locator("#comment-R").blur()
    page.keyboard.press("c")  # confirm: refused too, and done once signed in again
    page.locator("#signed-out").wait_for(state="visible")
    page.wait_for_function("(document.getElementById('signed-out').dataset.what || '').split(',').length === 3")
    text = page.locator("#signed-out").inner_text()
    assert "session has ended" in text and all(w in text for w in ("R box", "R findings", "R confirm")), text
    assert "credentials" not in text
    page.evaluate("Promise.all([window.viewer.store.saving.R, window.viewer.findings.saving.R])")
    assert page.input_value("#comment-R") == "small nodule, 8 mm"  # kept in the panel, not reset
    assert page.evaluate("window.viewer.store.boxes.R.dirty")
    assert page.evaluate("window.viewer.store.boxes.R.lps_min[0]") == pytest.approx(-50.0, abs=0.6)
    box = series.boxes.get(side="R")
    assert box.version == 1 and not series.findings.exists()  # nothing reached the server
    shot(page, "viewer-signed-out")
    # signing in again in another tab, then "Save my edits"
    other = page.context.new_page()
    browser_login(other, "clin")
    other.close()
    page.click("#signed-out-retry")
    page.wait_for_function("!window.viewer.store.boxes.R.dirty && window.viewer.store.boxes.R.version === 3")
    page.evaluate("Promise.all([window.viewer.store.saving.R, window.viewer.findings.saving.R])")
    box.refresh_from_db()
    assert box.version == 3 and box.status == "confirmed" and box.lps_min[0] == pytest.approx(-50.0, abs=0.6)
    assert series.findings.get(side="R").comment == "small nodule, 8 mm"
    assert page.locator("#signed-out").is_hidden()


def test_clinician_cannot_open_another_dataset(live_server, browser_page, browser_login, ct_series, users):
    page = browser_page
    theirs = ct_series(name="other-team", members=[users["lead"]])
    browser_login(page, "clin")
    assert page.goto(f"{live_server.url}/series/{theirs.pk}/").status == 404
    assert page.goto(f"{live_server.url}/datasets/{theirs.dataset.pk}/").status == 404
    for url in (f"/api/series/{theirs.pk}/volume/data/", f"/api/series/{theirs.pk}/volume/slabs/0/",
                f"/api/series/{theirs.pk}/boxes/", f"/api/series/{theirs.pk}/findings/",
                f"/api/datasets/{theirs.dataset.pk}/worklist/", f"/api/datasets/{theirs.dataset.pk}/findings/"):
        assert page.request.get(f"{live_server.url}{url}").status == 404, url
    resp = page.request.put(f"{live_server.url}/api/series/{theirs.pk}/boxes/R/", data={"lps_min": [0, 0, 0],
                            "lps_max": [1, 1, 1], "version": 0}, headers={"X-CSRFToken": "x"})
    assert resp.status in (403, 404)
    assert not theirs.boxes.exists()


def test_a_volume_stored_in_another_axis_order_is_shown_axially(live_server, browser_page, browser_login, ct_series,
                                                                  users, realct):
    """A volume whose voxel axes are stored as (x, z, y) still shows axial slices with R on the viewer's left and
    anterior at the top, each pixel the grey of the HU at its LPS position."""
    from inference.ml.volume import Volume, load_nifti

    orig = load_nifti(realct["example_ct_sm"])
    array = np.ascontiguousarray(orig.array.transpose(1, 0, 2))  # [k, j, i] -> [j, k, i]: new (i, j, k) = (i, k, j)
    affine = orig.affine[:, [0, 2, 1, 3]]
    series = ct_series(members=[users["clinician"]], volume=Volume(array, affine))
    page = browser_page
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    assert page.evaluate("window.viewer.views.axial.t.fixed") == 1  # the stored axis along z
    assert page.evaluate("window.viewer.views.axial.depth") == orig.shape[0]
    geo = Geometry(page, affine)
    pos = page.evaluate("window.viewer.shared.position")
    z = voxel_to_lps(affine, pos)[2]
    samples = {"right": (-100.0, -150.0), "left": (100.0, -150.0), "anterior": (0.0, -250.0), "posterior": (0.0, -60.0)}
    shown = {}
    for name, (x, y) in samples.items():
        i, j, k = np.rint(lps_to_voxel(orig.affine, [x, y, z])).astype(int)
        centre = voxel_to_lps(orig.affine, [i, j, k])
        shown[name] = geo.screen_of("axial", centre)
        rgb = pixel(page, "axial", *shown[name])
        assert rgb[0] == grey(orig.array[k, j, i], 40, 400), name
    assert shown["right"][0] < shown["left"][0]  # patient right on the viewer's left
    assert shown["anterior"][1] < shown["posterior"][1]  # anterior at the top
    shot(page, "viewer-permuted")
    # the browser's geometry module is the Python one's mirror, also for an oblique, flipped affine
    rot = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([-0.7, 0.8, 2.5])
    oblique = np.eye(4)
    oblique[:3, :3], oblique[:3, 3] = rot, [120.0, -40.0, 310.0]
    points = np.random.default_rng(0).uniform(-50, 300, (5, 3))
    js = page.evaluate("""async ([affine, points]) => {
        const g = await import('/static/frontend/js/viewer/geometry.js');
        const inv = g.invertAffine(affine);
        return { lps: points.map((p) => g.voxelToLps(affine, p)), ijk: points.map((p) => g.lpsToVoxel(inv, p)),
                 spacing: g.spacingOf(affine) }; }""", [oblique.tolist(), points.tolist()])
    np.testing.assert_allclose(js["lps"], voxel_to_lps(oblique, points), atol=1e-9)
    np.testing.assert_allclose(js["ijk"], lps_to_voxel(oblique, points), atol=1e-9)
    np.testing.assert_allclose(js["spacing"], spacing_of(oblique), atol=1e-12)


def test_image_numbers_count_in_the_order_the_images_are_listed_whatever_the_storage_direction(
        live_server, browser_page, browser_login, ct_series, users, realct):
    """Home goes to "the first image" (the most superior axial one, as a PACS lists them) and down to the next: the
    image numbers of the corner overlay and of the coronal and sagittal labels count in that order. Before, they
    were storage indices + 1: on the store's LPS axes (k -> superior) Home showed "slice 112/112", ↓ counted down, and
    a volume stored feet first or right to left numbered its images the other way round."""
    from inference.ml.volume import Volume, load_nifti

    orig = load_nifti(realct["example_ct_sm"])
    flipped = np.ascontiguousarray(orig.array[::-1, :, ::-1])  # stored feet first (k -> I) and left to right (i -> R)
    nk, nj, ni = flipped.shape
    affine = orig.affine.copy()
    affine[:3, 3] += affine[:3, 0] * (ni - 1) + affine[:3, 2] * (nk - 1)
    affine[:3, [0, 2]] *= -1
    page = browser_page
    browser_login(page, "clin")
    for volume in (orig, Volume(flipped, affine)):
        series = ct_series(members=[users["clinician"]], volume=volume)
        open_viewer(page, live_server, series)
        ox, oy = origin(page, "axial")
        page.mouse.move(ox + 100, oy + 100)
        zs = [voxel_to_lps(volume.affine, [0, 0, k])[2] for k in range(nk)]
        page.keyboard.press("Home")
        index = page.evaluate("window.viewer.shared.position[2]")
        assert zs[index] == pytest.approx(max(zs))  # the first image: the most superior
        assert f"slice 1/{nk}" in page.locator("#ov-slice").inner_text()
        page.keyboard.press("ArrowDown")
        assert zs[page.evaluate("window.viewer.shared.position[2]")] == pytest.approx(max(zs) - 3.0, abs=0.5)
        assert f"slice 2/{nk}" in page.locator("#ov-slice").inner_text()
        page.keyboard.press("End")
        assert f"slice {nk}/{nk}" in page.locator("#ov-slice").inner_text()
        page.keyboard.press("Home")  # cine plays the images in that order too: 1, 2, 3, ...
        page.keyboard.press(" ")
        page.wait_for_function("!/slice 1\\//.test(document.getElementById('ov-slice').textContent)")
        page.keyboard.press(" ")
        played = int(page.locator("#ov-slice").inner_text().split("slice ")[1].split("/")[0])
        assert 2 <= played <= 9, played  # not the last image (30) and back up from there
        # coronal: front to back; sagittal: right to left
        for plane, axis, first in (("coronal", 1, min), ("sagittal", 0, min)):
            b = page.locator(f"#{plane}").bounding_box()
            page.mouse.move(b["x"] + 60, b["y"] + 60)
            page.keyboard.press("Home")
            page.evaluate("window.viewer.renderAll()")
            depth = volume.shape[2 - axis]
            label = page.evaluate(f"window.viewer.views.{plane}.sliceLabel")
            pos = page.evaluate("window.viewer.shared.position")
            along = [voxel_to_lps(volume.affine, [n if axis == 0 else 0, n if axis == 1 else 0, 0])[axis]
                     for n in range(depth)]
            assert along[pos[axis]] == pytest.approx(first(along)) and label.endswith(f"(1/{depth})"), label
            page.keyboard.press("ArrowDown")
            page.evaluate("window.viewer.renderAll()")
            assert page.evaluate(f"window.viewer.views.{plane}.sliceLabel").endswith(f"(2/{depth})")


def test_the_hu_readout_follows_the_slice_under_a_resting_pointer(live_server, browser_page, browser_login, ct_series,
                                                                   users, realct):
    """The pointer rests on the axial view while the slice changes by key (↓, PgUp, End), cine or a zoom key: the
    HU, mm and voxel readout is of the voxel now under it. Before, only a pointer move or the wheel updated it, so
    after ↓ it still gave the previous slice's HU and voxel."""
    from inference.ml.volume import load_nifti

    page = browser_page
    series = ct_series(members=[users["clinician"]])
    hu = load_nifti(realct["example_ct"]).array
    affine = np.asarray(series.volume.affine)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    geo = Geometry(page, affine)

    def readout():
        ijk = [int(v) for v in page.evaluate("document.getElementById('hu').dataset.ijk").split(",")]
        return ijk, int(page.evaluate("document.getElementById('hu').dataset.hu"))

    p = geo.on_slice("axial", 20.0, -170.0)
    ox, oy = origin(page, "axial")
    x, y = geo.screen_of("axial", p)
    page.mouse.move(ox + x, oy + y)
    (i, j, k), value = readout()
    assert value == hu[k, j, i]
    for key, k_now in (("ArrowDown", k - 1), ("PageDown", k - 11), ("End", 0), ("PageUp", 10)):
        page.keyboard.press(key)
        assert page.evaluate("window.viewer.shared.position[2]") == k_now
        assert readout() == ([i, j, k_now], hu[k_now, j, i]), key
    page.keyboard.press("+")  # the image zooms about the view's centre: another voxel comes under the pointer
    i2, j2, _ = np.rint(lps_to_voxel(affine, page.evaluate(
        f"window.viewer.views.axial.t.screenToLps({x}, {y}, 10)"))).astype(int)
    assert (i2, j2) != (i, j) and readout() == ([i2, j2, 10], hu[10, j2, i2])


# ------------------------------------------------------------------ what is seen, not what the page says
def marker_volume(shape_kji, spacing, flips=()):
    """A uniform 0 HU volume with 1000 HU cubes (half-size 1 and 2 voxels) on its middle axial and sagittal slices,
    stored with the voxel axes in ``flips`` (0 i, 1 j, 2 k) reversed. Returns (Volume, {plane: [(lps, half)]})."""
    from inference.ml.volume import Volume

    nk, nj, ni = shape_kji
    arr = np.zeros(shape_kji, np.int16)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-150.0, -120.0, 100.0)
    cubes = {"axial": [((int(ni * .32), int(nj * .35), nk // 2), 1), ((int(ni * .64), int(nj * .68), nk // 2), 2)],
             "sagittal": [((ni // 2, int(nj * .31), int(nk * .25)), 1), ((ni // 2, int(nj * .66), int(nk * .75)), 2)]}
    for plane in cubes.values():
        for (i, j, k), r in plane:
            arr[k - r:k + r + 1, j - r:j + r + 1, i - r:i + r + 1] = 1000
    markers = {p: [(voxel_to_lps(affine, ijk), r) for ijk, r in c] for p, c in cubes.items()}
    for ax in flips:  # the same patient stored the other way along voxel axis ``ax``
        n = arr.shape[2 - ax]
        arr = np.flip(arr, 2 - ax)
        affine[:3, 3] += affine[:3, ax] * (n - 1)
        affine[:3, ax] *= -1
    return Volume(np.ascontiguousarray(arr), affine), markers


def seen_markers(page, plane):
    """Centres (viewport CSS px) of the bright cubes on ``plane`` as the screen shows them (a screenshot of the
    visible part of the canvas, the view's overlays hidden), smallest first."""
    import io

    from PIL import Image
    from scipy import ndimage

    page.evaluate(f"(() => {{ const v = window.viewer.views.{plane}; v._overlays = v.overlays; v.overlays = []; v.render(); }})()")
    b = page.locator(f"#{plane}").bounding_box()
    vw, vh = page.evaluate("[innerWidth, innerHeight]")
    x0, y0 = max(b["x"], 0), max(b["y"], 0)
    clip = {"x": x0, "y": y0, "width": min(b["x"] + b["width"], vw) - x0, "height": min(b["y"] + b["height"], vh) - y0}
    img = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip, scale="css"))).convert("RGB")).astype(float)
    page.evaluate(f"(() => {{ const v = window.viewer.views.{plane}; v.overlays = v._overlays; v.render(); }})()")
    grey = img.min(axis=2)
    h, w = grey.shape
    seed = grey > 235
    seed[h - 50:, int(w * 0.5):] = False  # the scale bar
    seed[h - 22:, :] = False  # the slice label
    labels, n = ndimage.label(ndimage.binary_dilation(seed, iterations=3))
    weight = np.clip(grey - 110, 0, None) * (img.max(axis=2) - grey < 12)  # brighter than 0 HU, grey only
    found = []
    for m in range(1, n + 1):
        ys, xs = np.nonzero(labels == m)
        wm = weight[ys, xs]
        found.append(((seed & (labels == m)).sum(), x0 + (xs * wm).sum() / wm.sum() + 0.5, y0 + (ys * wm).sum() / wm.sum() + 0.5))
    return [(x, y) for _, x, y in sorted(found)]


def test_a_box_drawn_between_what_is_seen_is_stored_there_after_resizing_and_page_zoom(
        live_server, browser_chromium, browser_login, ct_series, users):
    """Independently of the page's own transform: the markers are found on a screenshot, the box is drawn from one
    to the other with the mouse and the API must give their LPS centres within a screen pixel; the box is drawn
    through them, R is on the viewer's left, anterior and superior at the top. A 512 x 384 matrix of 0.7 x 0.9 mm
    pixels stored right to left and feet first; a narrow window (1024 x 700) at pixel ratio 2, widened after the
    series loaded (1440 x 900), then a page zoom of 80% (CSS zoom, where event and layout coordinates are not the
    screen's)."""
    volume, markers = marker_volume((40, 384, 512), (0.7, 0.9, 2.5), flips=(0, 2))
    series = ct_series(members=[users["clinician"]], volume=volume)
    context = browser_chromium.new_context(viewport={"width": 1024, "height": 700}, device_scale_factor=2, **TEST_CONTEXT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    browser_login(page, "clin")
    open_viewer(page, live_server, series)
    page.add_style_tag(content=".vw-corner { display: none !important; }")  # text over the image
    # at the axial cubes' slice and the sagittal cubes' one
    position = np.rint(lps_to_voxel(volume.affine, markers["axial"][0][0])).astype(int)
    x_axis = int(np.argmax(np.abs(volume.affine[0, :3])))
    position[x_axis] = int(np.rint(lps_to_voxel(volume.affine, markers["sagittal"][0][0])[x_axis]))
    page.evaluate(f"window.viewer.navigateTo({json.dumps(position.tolist())})")
    for condition in ("narrow, pixel ratio 2", "widened", "page zoom 80%"):
        if condition == "widened":
            page.set_viewport_size({"width": 1440, "height": 900})
        elif condition == "page zoom 80%":
            page.evaluate("document.documentElement.style.zoom = '0.8'")
        page.wait_for_function("""() => ['axial', 'sagittal'].every(id => { const c = document.getElementById(id),
            t = window.viewer.views[id].t, r = c.getBoundingClientRect(); return c.width === t.deviceW && r.width > 0; })""")
        page.wait_for_timeout(200)  # the resize observers have run (no timing asserted)
        for plane, (col, row, row_sign) in (("axial", (0, 1, 1)), ("sagittal", (1, 2, -1))):
            (a, _), (b, _) = markers[plane]
            seen = seen_markers(page, plane)
            assert len(seen) == 2, (condition, plane, seen)
            (xa, ya), (xb, yb) = seen
            # right on the left, anterior (axial) / superior (sagittal) at the top
            assert np.sign(xb - xa) == np.sign(b[col] - a[col]), (condition, plane)
            assert np.sign(yb - ya) == row_sign * np.sign(b[row] - a[row]), (condition, plane)
            mm_per_px = (abs(b[col] - a[col]) / abs(xb - xa), abs(b[row] - a[row]) / abs(yb - ya))
            assert mm_per_px[0] == pytest.approx(mm_per_px[1], rel=0.03), (condition, plane, mm_per_px)  # mm square
            page.keyboard.press("d")
            page.mouse.move(xa, ya)
            page.mouse.down()
            page.mouse.move(xb, yb, steps=5)
            page.mouse.up()
            page.wait_for_function("(() => { const b = window.viewer.store.boxes.R; return b && !b.dirty && b.version > 0; })()")
            page.evaluate("window.viewer.store.saving.R")
            box = page.request.get(f"{live_server.url}/api/series/{series.pk}/boxes/R/").json()
            for axis, px in ((col, mm_per_px[0]), (row, mm_per_px[1])):
                assert box["lps_min"][axis] == pytest.approx(min(a[axis], b[axis]), abs=px), (condition, plane, axis)
                assert box["lps_max"][axis] == pytest.approx(max(a[axis], b[axis]), abs=px), (condition, plane, axis)
            page.mouse.move(xb, yb + 0.3)  # the HU readout over the larger cube
            assert page.evaluate("document.getElementById('hu').dataset.hu") == "1000", (condition, plane)
    context.close()


def test_the_panel_writes_times_as_every_page_does_whatever_the_browser_locale(live_server, browser_chromium,
                                                                                browser_login, ct_series, users):
    """A box's and a version's time read "2026-12-07 15:29" (UTC, the site's "Y-m-d H:i", as the job, import and
    dataset pages write them), not the browser's locale: an en-US browser wrote "12/7/26, 3:29 PM", which a UK
    reader takes for 12 July."""
    from django.utils import timezone

    from annotations.services.boxes import save_box

    series = ct_series(members=[users["clinician"]])
    save_box(series, "R", *R_BOX, source="landmarks")
    stamp = timezone.localtime(series.boxes.get(side="R").updated_at).strftime("%Y-%m-%d %H:%M")
    context = browser_chromium.new_context(viewport={"width": 1400, "height": 900}, locale="en-US",
                                           timezone_id="America/New_York", **TEST_CONTEXT)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        browser_login(page, "clin")
        open_viewer(page, live_server, series)
        page.wait_for_function("document.getElementById('box-R').textContent.includes('mm')")
        assert stamp in page.locator("#box-R").inner_text()
        assert stamp in page.locator("#box-versions").inner_text()
        assert "/" not in page.locator("#box-R").inner_text() + page.locator("#box-versions").inner_text()
    finally:
        context.close()


def test_the_strips_score_axis_labels_never_run_into_each_other(live_server, browser_chromium, browser_login,
                                                                ct_series, users):
    """A per-gland verdict at operating value 0.79 on the narrow strip of a 1280x800 window drew "0.79" beside
    "1", read "0.791". Labels of the score axis do not overlap at the README's window sizes, and the operating
    value's is always there."""
    from tests.annotations.test_api_viewer import make_prediction

    series = boxed_series(ct_series, users)
    p = make_prediction(series, "abnormal", 0.8)
    p.operating_value = 0.79
    p.side_details = {
        "R": {"score": 0.3, "probability": 0.3, "probability_cutoff": 0.79, "verdict": "normal",
              "flagged_slices_mm": [], "slice_scores": [[247.3, 0.4], [250.3, 0.1]]},
        "L": {"score": 0.9, "probability": 0.9, "probability_cutoff": 0.79, "verdict": "abnormal",
              "flagged_slices_mm": [250.3], "slice_scores": [[247.3, 0.2], [250.3, 0.9]]}}
    p.slice_scores = sorted(sc for d in p.side_details.values() for sc in d["slice_scores"])
    p.flagged_slices_mm = [250.3]
    p.save()
    for width, height, scale in ((1280, 800, 1), (1440, 900, 1), (1920, 1080, 1), (1280, 800, 2)):
        context = browser_chromium.new_context(viewport={"width": width, "height": height}, device_scale_factor=scale,
                                               **TEST_CONTEXT)
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            browser_login(page, "clin")
            open_viewer(page, live_server, series)
            labels = page.locator("#strip text[text-anchor=middle]")  # the score axis's labels
            texts = [labels.nth(i).text_content() for i in range(labels.count())]
            assert "0.79" in texts, texts
            boxes = sorted((labels.nth(i).bounding_box() for i in range(labels.count())), key=lambda b: b["x"])
            for a, b in zip(boxes, boxes[1:]):  # at least a space apart ("0.79" ended 0.4 px before "1")
                assert a["x"] + a["width"] + 4 <= b["x"], (width, texts)
        finally:
            context.close()
