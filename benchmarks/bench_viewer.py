#!/usr/bin/env python
"""The CT viewer's first image of a never-opened series and its slice change: today's path vs ours, one run.

A 512x512x300 int16 series (the real TotalSegmentator example CT resampled, nearest neighbour) is stored as a
NIfTI volume three times, as an import would, in a throwaway SQLite site served by ``manage.py runserver`` on
this machine (a local server); Debian's chromium (headless, Playwright) opens it, each time in a fresh browser
context (an empty HTTP cache):

- **baseline** (the viewer before this change: ``benchmarks/viewer_baseline/`` holds its volume and view modules):
  the page fetches the whole volume as one gzip stream (``/api/series/<id>/volume/data/``), which the server
  compresses on first view, then inflates and draws; "warm" repeats it once that file exists;
- **ours**: the viewer page itself; the volume's slabs were prepared at import (the ``prepare_viewer`` job's
  work, timed here as import-time cost), the slab nearest the boxes comes first;
- **ours, not prepared** (a volume imported before the preparation existed): the first slab request prepares.

First image: milliseconds from navigation start to the first axial image drawn (``performance.now()`` in the page).
Slice change: an axial slice change with all three views redrawn, synchronously ("render") and until the next
frame is produced ("frame"), mean / p95 / max over ``--changes`` jumps. Targets: first image <= 1500 ms, slice
change < 16 ms. Timings on a shared machine vary; medians of ``--trials`` runs are printed, with the ratio.

Usage: ``python benchmarks/bench_viewer.py [--slices 300] [--trials 3] [--changes 100] [--viewport 1440x900]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "benchmarks" / "viewer_baseline"
sys.path.insert(0, str(REPO))

# the viewer before this change, as its page ran it: whole-volume load, three views, the axial one refilled per change
BASELINE_PAGE = """<!doctype html><html><head><style>
body { margin: 0; display: flex; height: 100vh; background: #000; }
#axial { flex: 1 1 auto; min-width: 300px; } #side { width: 34%; display: flex; flex-direction: column; }
canvas { display: block; width: 100%; height: 100%; } #side canvas { flex: 1 1 0; min-height: 0; }
</style></head><body><div id="axial"><canvas id="ax"></canvas></div>
<div id="side"><canvas id="cor"></canvas><canvas id="sag"></canvas></div>
<script type="module">
import { loadVolume } from "/bench-baseline/volume.js";
import { SliceView, windowLut } from "/bench-baseline/view.js";
const header = HEADER;
const vol = await loadVolume(header);
const shared = { lut: windowLut(40, 400), position: [vol.ni >> 1, vol.nj >> 1, vol.nk >> 1] };
const views = [["ax", "axial"], ["cor", "coronal"], ["sag", "sagittal"]].map(([id, p]) => new SliceView(document.getElementById(id), vol, p, shared));
views.forEach((v) => v.render());
window.firstImageMs = performance.now();
const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
window.bench = async (n) => {
  const sync = [], painted = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    shared.position[2] = (shared.position[2] + 7) % vol.nk;
    views[0].render(true); views[1].render(false); views[2].render(false);
    sync.push(performance.now() - t);
    await frame();
    painted.push(performance.now() - t);
  }
  return { sync, painted };
};
window.ready = true;
</script></body></html>"""

OURS_BENCH = """async (n) => {
  const v = window.viewer, ax = v.views.axial, sync = [], painted = [];
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    sync.push(v.setSlice((ax.index + 7) % ax.depth));
    await frame();
    painted.push(performance.now() - t);
  }
  return { sync, painted };
}"""


BREAKDOWN = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const js = res.filter((r) => r.name.endsWith(".js"));
  const slabs = res.filter((r) => r.name.includes("/volume/slabs/")).sort((a, b) => a.responseEnd - b.responseEnd);
  return { html: nav.responseEnd, modules: Math.max(...js.map((r) => r.responseEnd)), firstSlabStart: slabs[0].startTime,
           firstSlab: slabs[0].responseEnd, firstSlabKB: slabs[0].encodedBodySize / 1024, lastSlab: slabs[slabs.length - 1].responseEnd,
           slabs: slabs.length };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_array(slices: int) -> tuple[np.ndarray, np.ndarray]:
    """The real example CT resampled (nearest neighbour) to ``[slices, 512, 512]`` int16, with its affine."""
    from scipy.ndimage import zoom

    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_fixtures

    fetch_fixtures.main()
    from inference.ml.volume import load_nifti

    vol = load_nifti(fetch_fixtures.paths()["example_ct"])
    factors = np.array([slices, 512, 512]) / np.array(vol.shape)
    arr = zoom(vol.array, factors, order=0).astype(np.int16)
    affine = vol.affine.copy()
    affine[:3, :3] = affine[:3, :3] / factors[::-1]
    affine[:3, 3] = vol.affine[:3, 3] + vol.affine[:3, :3] @ ((1 / factors[::-1] - 1) / 2)  # same extent
    return arr, affine


def build_site(data_dir: Path, slices: int, copies: int) -> dict:
    """A migrated SQLite site with a clinician and ``copies`` scans of the same 512x512x``slices`` volume."""
    os.environ.update(ADRENAL_DATA_DIR=str(data_dir), DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite3'}",
                      ADRENAL_LOCAL_SECRET="1", DEBUG="1", DJANGO_SETTINGS_MODULE="adrenal_site.settings",
                      ADRENAL_AUTO_PROPOSE="0", DJANGO_ALLOW_ASYNC_UNSAFE="true")  # ORM calls beside Playwright
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from adrenal_site.roles import ensure_groups
    from annotations.models import Dataset, Patient, Series, Study, Volume
    from inference.ml.geometry import spacing_of
    from inference.ml.volume import Volume as HuVolume
    from inference.ml.volume import save_nifti

    call_command("migrate", verbosity=0)
    ensure_groups()
    user = User.objects.create_user("bench", password="pw-bench")
    user.groups.add(Group.objects.get(name="clinician"))
    dataset = Dataset.objects.create(name="bench")
    dataset.members.add(user)
    t = time.perf_counter()
    arr, affine = make_array(slices)
    made = time.perf_counter() - t
    first = Path(settings.MEDIA_ROOT) / "volumes" / "bench-0.nii.gz"
    t = time.perf_counter()
    save_nifti(HuVolume(arr, affine), first)
    stored = time.perf_counter() - t
    series = []
    for n in range(copies):
        path = first.with_name(f"bench-{n}.nii.gz")
        if n:
            shutil.copyfile(first, path)
        patient = Patient.objects.create(dataset=dataset, pseudo_id=f"P{n:03d}")
        study = Study.objects.create(patient=patient, study_uid=f"1.2.3.{n}")
        s = Series.objects.create(study=study, series_uid=f"1.2.3.{n}.1", series_description="bench 512x512",
                                  modality="CT", slice_thickness_mm=float(spacing_of(affine)[2]))
        Volume.objects.create(series=s, file=str(path.relative_to(settings.MEDIA_ROOT)), shape=list(arr.shape),
                              spacing_mm=[float(v) for v in spacing_of(affine)], affine=affine.tolist())
        series.append(s.pk)
    return {"series": series, "shape": list(arr.shape), "made_s": made, "stored_s": stored,
            "media": Path(settings.MEDIA_ROOT)}


def prepare(series_id: int) -> float:
    """The import-time preparation (what the ``prepare_viewer`` job does for one scan); seconds."""
    from annotations.models import Volume
    from annotations.services.volume_cache import prepare_viewer_data

    t = time.perf_counter()
    prepare_viewer_data(Volume.objects.get(series_id=series_id))
    return time.perf_counter() - t


def forget_viewer_data(media: Path, series_ids) -> None:
    """Remove the viewer's cached copies of these scans' volumes (a never-opened, never-prepared state)."""
    from annotations.models import Volume

    for v in Volume.objects.filter(series_id__in=series_ids):
        for p in (media / "viewer").glob(f"volume-{v.pk}-*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def stats(values) -> dict:
    return {"mean": float(np.mean(values)), "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--viewport", default="1440x900")
    args = parser.parse_args()
    vw, vh = (int(v) for v in args.viewport.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    server = None
    try:
        # per trial: one scan for the baseline, one prepared at import, one never prepared
        site = build_site(tmp, args.slices, 3 * args.trials)
        ids = site["series"]
        base_ids, ours_ids, unprepared_ids = ids[0::3], ids[1::3], ids[2::3]
        print(f"volume {site['shape'][::-1]} (i, j, k) int16, {np.prod(site['shape']) * 2 / 1e6:.0f} MB raw; "
              f"stored as NIfTI in {site['stored_s']:.1f} s (import), {len(ids)} scans")
        prep = [prepare(s) for s in ours_ids]
        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                  cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/accounts/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        from tests.plugins.browser import launch_chromium

        results = {"base_cold": [], "base_warm": [], "ours": [], "ours_unprepared": []}
        slice_change, breakdown = {}, {}
        with sync_playwright() as pw:
            browser = launch_chromium(pw)

            def fresh_page():
                context = browser.new_context(viewport={"width": vw, "height": vh})
                page = context.new_page()
                page.set_default_timeout(120_000)
                page.goto(f"{url}/accounts/login/")
                page.fill("input[name=username]", "bench")
                page.fill("input[name=password]", "pw-bench")
                page.click("button[type=submit], input[type=submit]")
                page.wait_for_load_state()
                page.route("**/bench-baseline/*.js", lambda route: route.fulfill(
                    path=str(BASELINE / route.request.url.rsplit("/", 1)[1]), content_type="text/javascript"))
                return context, page

            def baseline(series_id: int, bench: bool = False) -> float:
                context, page = fresh_page()
                header = page.request.get(f"{url}/api/series/{series_id}/volume/").json()
                html = BASELINE_PAGE.replace("HEADER", json.dumps(header))
                page.route("**/bench-baseline/page", lambda route: route.fulfill(body=html, content_type="text/html"))
                page.goto(f"{url}/bench-baseline/page")
                page.wait_for_function("window.ready === true")
                first = page.evaluate("window.firstImageMs")
                if bench:
                    slice_change["baseline"] = page.evaluate(f"window.bench({args.changes})")
                context.close()
                return first

            def ours(series_id: int, bench: bool = False) -> float:
                context, page = fresh_page()
                page.goto(f"{url}/series/{series_id}/")
                page.wait_for_function("window.viewer && window.viewer.firstImageMs")
                first = page.evaluate("window.viewer.firstImageMs")
                page.wait_for_function("window.viewer.ready === true")
                if bench:
                    slice_change["ours"] = page.evaluate(OURS_BENCH, args.changes)
                    breakdown.update(page.evaluate(BREAKDOWN))
                context.close()
                return first

            ours(ours_ids[0])  # warm the server and the browser once (module caches, first queries); not counted
            forget_viewer_data(site["media"], ids)
            for s in ours_ids:
                prepare(s)  # the cold-start run above must not have prepared anything for the others
            for t in range(args.trials):
                results["base_cold"].append(baseline(base_ids[t], bench=(t == 0)))
                results["base_warm"].append(baseline(base_ids[t]))
                results["ours"].append(ours(ours_ids[t], bench=(t == 0)))
                results["ours_unprepared"].append(ours(unprepared_ids[t]))
            browser.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"import-time preparation of the slabs: {statistics.median(prep):.2f} s per scan (median of {len(prep)})")
    print(f"first image of a never-opened series, ms from navigation (median of {args.trials}; runs):")
    names = {"base_cold": "baseline, never opened (gzip made on view)", "base_warm": "baseline, opened before",
             "ours": "ours, prepared at import", "ours_unprepared": "ours, not prepared (first request prepares)"}
    for key, name in names.items():
        print(f"  {name:45s} {med[key]:8.0f}   {' '.join(f'{v:.0f}' for v in results[key])}")
    b = breakdown
    print(f"  ours, where the time goes (first trial, ms from navigation): page {b['html']:.0f}, modules "
          f"{b['modules']:.0f}, first slab asked {b['firstSlabStart']:.0f} and in {b['firstSlab']:.0f} "
          f"({b['firstSlabKB']:.0f} KB gzip), all {b['slabs']} slabs in {b['lastSlab']:.0f}")
    print(f"ratio baseline never-opened / ours: {med['base_cold'] / med['ours']:.1f}x; "
          f"baseline opened-before / ours: {med['base_warm'] / med['ours']:.1f}x")
    fmt = lambda s: f"mean {s['mean']:6.2f}  p95 {s['p95']:6.2f}  max {s['max']:6.2f} ms"  # noqa: E731
    for who in ("baseline", "ours"):
        print(f"slice change, three views, {who:8s} render: {fmt(stats(slice_change[who]['sync']))}")
        print(f"slice change, three views, {who:8s} frame : {fmt(stats(slice_change[who]['painted']))}")
    b, o = stats(slice_change["baseline"]["sync"]), stats(slice_change["ours"]["sync"])
    print(f"ratio baseline/ours slice change (render, mean): {b['mean'] / o['mean']:.2f}x")
    print(f"targets: first image <= 1500 ms: {'met' if med['ours'] <= 1500 else 'NOT met'} ({med['ours']:.0f} ms); "
          f"slice change < 16 ms: {'met' if o['p95'] < 16 else 'NOT met'} (render p95 {o['p95']:.1f} ms) "
          f"at {args.viewport}")


if __name__ == "__main__":
    main()
