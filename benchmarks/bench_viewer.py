#!/usr/bin/env python
"""Slice-change render time in Chromium for a 512x512x300 series: the viewer's way vs a naive baseline.

- ours: the volume is fetched once as gzip-encoded raw int16 (what ``/api/series/<id>/volume/data/`` serves)
  and every slice change windows the slice in the browser through a lookup table and draws it
  (``frontend/static/frontend/js/viewer/view.js``, the same module the viewer page uses);
- baseline: every slice change fetches a server-rendered, windowed PNG of that slice and draws it.

Both run in Debian's chromium (headless, through Playwright) against a local HTTP server on this machine, on
the real TotalSegmentator example CT resampled (nearest neighbour) to 512x512x300. Printed: mean / p95 / max
milliseconds per slice change, the ratio baseline/ours, and whether ours meets the 30 ms target.

Usage: ``python benchmarks/bench_viewer.py [--slices 300] [--changes 100]``
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
STATIC = REPO / "frontend" / "static"

PAGE = """<!doctype html><html><body style="margin:0;background:#000">
<canvas id="c" style="width:800px;height:800px;display:block"></canvas>
<canvas id="cor" style="width:400px;height:300px;display:block"></canvas>
<canvas id="sag" style="width:400px;height:300px;display:block"></canvas>
<script type="module">
import { loadVolume } from "/static/frontend/js/viewer/volume.js";
import { SliceView, windowLut } from "/static/frontend/js/viewer/view.js";
const header = await (await fetch("/header.json")).json();
const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
function stats(t) { const s = [...t].sort((a, b) => a - b);
  return { mean: t.reduce((a, b) => a + b, 0) / t.length, p95: s[Math.floor(s.length * 0.95)], max: s[s.length - 1] }; }
window.runOurs = async (n) => {
  const t0 = performance.now();
  const vol = await loadVolume(header);
  const loadMs = performance.now() - t0;
  const shared = { lut: windowLut(40, 400), position: [256, 256, 0] };
  const view = new SliceView(document.getElementById("c"), vol, "axial", shared);
  view.render(); await frame();
  const sync = [], painted = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    shared.position[2] = (i * 7) % vol.nk;  // jumps, not only neighbours
    sync.push(view.render());
    await frame();                          // until the frame with the new slice is produced
    painted.push(performance.now() - t);
  }
  // as the viewer page does it: the axial view refilled, coronal and sagittal redrawn (their crosshair moves)
  const cor = new SliceView(document.getElementById("cor"), vol, "coronal", shared);
  const sag = new SliceView(document.getElementById("sag"), vol, "sagittal", shared);
  cor.render(); sag.render(); await frame();
  const three = [], threePainted = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    shared.position[2] = (i * 7) % vol.nk;
    three.push(view.render() + cor.render(false) + sag.render(false));
    await frame();
    threePainted.push(performance.now() - t);
  }
  return { loadMs, sync: stats(sync), painted: stats(painted), three: stats(three), threePainted: stats(threePainted) };
};
window.runBaseline = async (n) => {
  const canvas = document.getElementById("c"); const ctx = canvas.getContext("2d");
  canvas.width = 800; canvas.height = 800;
  const sync = [], painted = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const k = (i * 7) % header.shape[0];
    const img = new Image(); img.src = `/png/${k}?level=40&width=400`;
    await img.decode();
    ctx.drawImage(img, 0, 0, 800, 800);
    sync.push(performance.now() - t);
    await frame();
    painted.push(performance.now() - t);
  }
  return { sync: stats(sync), painted: stats(painted) };
};
window.ready = true;
</script></body></html>"""


def make_volume(slices: int) -> tuple[np.ndarray, np.ndarray]:
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
    return arr, affine


def png_of(slice_hu: np.ndarray, level: float, width: float) -> bytes:
    from PIL import Image

    g = np.clip((slice_hu.astype(np.float32) - (level - width / 2)) * (255 / width), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(g).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def serve(arr: np.ndarray, affine: np.ndarray) -> ThreadingHTTPServer:
    header = {"shape": list(arr.shape), "affine": affine.tolist(), "data_url": "/data", "dtype": "int16"}
    data_gz = gzip.compress(np.ascontiguousarray(arr, "<i2").tobytes(), compresslevel=1)

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(STATIC.parent), **kw)

        def log_message(self, *args):
            pass

        def send_bytes(self, body: bytes, ctype: str, gz: bool = False):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            if gz:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/":
                return self.send_bytes(PAGE.encode(), "text/html")
            if path == "/header.json":
                return self.send_bytes(json.dumps(header).encode(), "application/json")
            if path == "/data":
                return self.send_bytes(data_gz, "application/octet-stream", gz=True)
            if path.startswith("/png/"):
                k = int(path.rsplit("/", 1)[1])
                return self.send_bytes(png_of(arr[k], 40, 400), "image/png")
            if path.startswith("/static/") and path.endswith(".js"):
                self.path = path
                return super().do_GET()
            self.send_error(404)

        def guess_type(self, path):
            return "text/javascript" if str(path).endswith(".js") else super().guess_type(path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    t = time.perf_counter()
    arr, affine = make_volume(args.slices)
    print(f"volume {arr.shape[::-1]} (i, j, k) int16, {arr.nbytes / 1e6:.0f} MB raw, made in {time.perf_counter() - t:.1f} s")
    server = serve(arr, affine)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO))
    from tests.plugins.browser import launch_chromium

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        page.goto(url)
        page.wait_for_function("window.ready === true")
        ours = page.evaluate(f"window.runOurs({args.changes})", )
        base = page.evaluate(f"window.runBaseline({args.changes})")
        browser.close()
    server.shutdown()
    fmt = lambda s: f"mean {s['mean']:7.2f}  p95 {s['p95']:7.2f}  max {s['max']:7.2f} ms"  # noqa: E731
    print(f"ours     load once (fetch + inflate {arr.nbytes / 1e6:.0f} MB): {ours['loadMs']:.0f} ms")
    print(f"ours     slice change, render only       : {fmt(ours['sync'])}")
    print(f"ours     slice change, until next frame  : {fmt(ours['painted'])}")
    print(f"ours     three views, render only        : {fmt(ours['three'])}")
    print(f"ours     three views, until next frame   : {fmt(ours['threePainted'])}")
    print(f"baseline slice change, PNG fetch+draw    : {fmt(base['sync'])}")
    print(f"baseline slice change, until next frame  : {fmt(base['painted'])}")
    print(f"ratio baseline/ours, render (mean): {base['sync']['mean'] / ours['sync']['mean']:.1f}x; "
          f"until next frame (mean, both wait for the 60 Hz frame): {base['painted']['mean'] / ours['painted']['mean']:.1f}x")
    print("(the baseline's server is on this machine: no network latency, so it is the baseline's best case)")
    worst = max(ours["painted"]["p95"], ours["threePainted"]["p95"])
    print(f"target < 30 ms per slice change: {'met' if worst < 30 else 'NOT met'} (p95 until next frame {worst:.1f} ms)")


if __name__ == "__main__":
    main()
