#!/usr/bin/env python
"""Synthetic cohort speed: patients per minute for a default-profile cohort written as DICOM (the issue's
target: 40 patients in at most 3 minutes on 2 cores), and the body-layer renderer side by side with a
naive whole-volume version (the baseline it replaced), on the same 512x512 grid.

Usage: ``python benchmarks/bench_synthetic.py [--patients 40] [--workers 2] [--profile default] [--keep DIR]``
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthetic import make_cohort  # noqa: E402
from synthetic import anatomy  # noqa: E402
from synthetic.canvas import Canvas  # noqa: E402
from synthetic.tissues import hu  # noqa: E402


def naive_paint_body(cv: Canvas, a, phase: str) -> None:
    """Baseline: the same layers computed on whole-volume float temporaries at once."""
    w = cv.W[:, None, None] / a.sz
    A = np.interp(w, [-400, -150, 0, 100, 400], [170, 160, 158, 152, 145]) * a.sx + a.fat * 0.8
    Ba = np.interp(w, [-400, -150, 0, 100, 400], [105, 118, 118, 112, 105]) * a.sy + a.fat * 0.6
    u, v = cv.U[None], cv.V[None]
    B = np.where(v > 0, 115 * a.sy, Ba)
    ru2, rv2 = (np.abs(u) / A) ** 2, (np.abs(v) / B) ** 2
    q = ru2 + rv2
    r = np.sqrt(np.sqrt(ru2 * ru2 + rv2 * rv2) * 0.35 + q * 0.65)
    d = (1 - r) * (ru2 * A + rv2 * B) / np.maximum(q, 1e-6)
    fat = a.fat * (0.55 + 0.6 * np.clip(-v / (120 * a.sy), 0, 1))
    fat = np.where(v > 0, fat * 0.6, fat)
    h = cv.px / 2
    vals = [hu(t, phase) for t in ("skin", "subcutaneous_fat", "muscle", "visceral_fat")]
    out = -1000 + np.clip((d + h) / (2 * h), 0, 1) * (vals[0] + 1000)
    out = out + np.clip((d - 2 + h) / (2 * h), 0, 1) * (vals[1] - vals[0])
    dm = d - 2 - fat
    out = out + np.clip((dm + h) / (2 * h), 0, 1) * (vals[2] - vals[1])
    out = out + np.clip((dm - 13 + h) / (2 * h), 0, 1) * (vals[3] - vals[2])
    cv.hu[:] = out
    cv.label[:] = (d >= 0).astype(np.uint8) + (d >= 2) + (dm >= 0) + (dm >= 13)


def bench_body(slices: int = 120) -> None:
    a = anatomy.draw(np.random.default_rng(2))
    xs = -0.78 * 255.5 + 0.78 * np.arange(512)
    zs = -400 + np.linspace(-200, 95, slices)
    times = {}
    for name, fn in (("naive whole-volume", naive_paint_body), ("ours slice-wise", anatomy.paint_body)):
        cv = Canvas(xs, xs.copy(), zs, 0.02, (0.0, -25.0, -400.0))
        t = time.perf_counter()
        fn(cv, a, "portal_venous")
        times[name] = time.perf_counter() - t
    base, ours = times["naive whole-volume"], times["ours slice-wise"]
    print(f"body layers, 512x512x{slices}: baseline {base:.2f} s, ours {ours:.2f} s, speed-up x{base / ours:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--keep", default=None, help="write the cohort here and keep it")
    args = ap.parse_args()
    bench_body()
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-synthetic-"))
    try:
        t = time.perf_counter()
        rows = make_cohort(out / "cohort", args.patients, 0.5, 1, profile=args.profile, workers=args.workers)
        dt = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (out / "cohort").rglob("*") if p.is_file())
        slices = sum(int(r.extra["slices"] or 0) for r in rows if r.kind == "axial")
        print(f"cohort ({args.profile}): {args.patients} patients, {len(rows)} series, {slices} axial slices, "
              f"{size / 1e9:.2f} GB in {dt:.1f} s with {args.workers} workers -> "
              f"{args.patients / dt * 60:.1f} patients/minute (40 patients in {40 * dt / args.patients / 60:.2f} min; "
              f"target <= 3 min)")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
