#!/usr/bin/env python
"""Proposal time per scan on 2 CPU cores and what the boxes hold: today's atlas proposer (``propose``) beside
the earlier landmark proposer (``propose_from_landmarks``: lung bases and spine, region-sized boxes), in one run.

Scans (each held in memory as an int16 Volume; loading is timed apart):
- the real TotalSegmentator CT (example_ct) resampled to a clinical grid, ~0.78 x 0.78 x 1.5 mm (488 x 404 x 222);
- the real 20-slice DICOM series (example_ct_dicom, 512 x 512 x 20; another patient than the atlas);
- synthetic patients of fresh seeds (``--seeds``, default 3400-3405; demo profile, 512 x 512, 3-5 mm slices),
  which no atlas was made from.
Per scan: seconds for each proposer (best of ``--repeats``), box sides (mm), whether every gland (and lesion)
voxel is inside, and the ratio of times. Also, on example_ct, the atlas proposer without the atlas made from it
(leave-one-out: the DICOM patient's atlas, right gland only, and the synthetic ones remain), and on the DICOM
series without the atlas made from it.

Usage: ``python benchmarks/bench_proposals.py [--repeats 2] [--threads 2] [--seeds 3400-3405]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", default="3400-3405")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import fetch_fixtures
    import numpy as np
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    from inference.ml.dicom import load_folder
    from inference.ml.geometry import voxel_to_lps
    from inference.ml.proposals import propose, propose_from_landmarks
    from inference.ml.volume import load_nifti, save_nifti
    from synthetic import make_patient
    from tests.plugins.proposals import resample, synthetic_truth

    fetch_fixtures.main()
    paths = fetch_fixtures.paths()
    seg = load_nifti(Path(paths["seg_dir"]) / "example_seg_fast_force_split.nii.gz", dtype=np.uint8)
    ct = resample(load_nifti(paths["example_ct"]), (0.78, 0.78, 1.5))
    with tempfile.TemporaryDirectory() as tmp:
        path = save_nifti(ct, Path(tmp) / "scan.nii.gz")
        t = time.perf_counter()
        load_nifti(path)
        load_s = time.perf_counter() - t
    dicom = load_folder(paths["example_ct_dicom"])
    dseg = load_nifti(Path(paths["seg_dir"]) / "example_seg_dicom.nii.gz", dtype=np.uint8)

    def seg_truth(s, labels):
        return {side: voxel_to_lps(s.affine, np.argwhere(s.array == lab)[:, ::-1]) for side, lab in labels.items()}

    cases = [("example_ct 0.78x0.78x1.5", ct, seg_truth(seg, {"R": 8, "L": 9})),
             ("example_ct_dicom (R only)", dicom, seg_truth(dseg, {"R": 8}))]
    lo, hi = (int(v) for v in args.seeds.split("-"))
    for seed in range(lo, hi + 1):
        scan = make_patient(seed, abnormal=seed % 2 == 1, profile="demo")
        cases.append((f"synthetic demo {seed} ({scan.label})", scan.volume,
                      {s: synthetic_truth(scan, s) for s in ("R", "L")}))

    def timed(fn, volume):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn(volume)
            best = min(best, time.perf_counter() - t)
        return out, best

    def describe(result, truth) -> str:
        parts = []
        for side, pts in truth.items():
            box = result.boxes.get(side)
            if box is None:
                parts.append(f"{side}: none")
                continue
            parts.append(f"{side}: {'x'.join(f'{v:.0f}' for v in box.size_mm)} mm "
                         f"{100 * box.contains(pts).mean():.0f}% in")
        return ", ".join(parts) if result.status == "proposed" else f"not covered ({result.reason[:40]})"

    totals = {"ours": [], "base": []}
    print(f"{'scan':34s} {'shape (i,j,k)':>16s} | {'atlas s':>7s} {'landmark s':>10s} {'ratio':>6s} | boxes")
    for name, volume, truth in cases:
        ours, t_ours = timed(propose, volume)
        base, t_base = timed(propose_from_landmarks, volume)
        totals["ours"].append(t_ours)
        totals["base"].append(t_base)
        print(f"{name:34s} {str(volume.shape[::-1]):>16s} | {t_ours:7.2f} {t_base:10.2f} {t_ours / t_base:6.1f} | "
              f"atlas: {describe(ours, truth)}; landmarks: {describe(base, truth)}", flush=True)
    print(f"mean s/scan: atlas {np.mean(totals['ours']):.2f} (max {np.max(totals['ours']):.2f}), "
          f"landmarks {np.mean(totals['base']):.2f}; ratio atlas/landmarks "
          f"{np.mean(totals['ours']) / np.mean(totals['base']):.1f}x; loading the clinical NIfTI (both): {load_s:.2f} s")
    loo, t_loo = timed(lambda v: propose(v, exclude_sources=("totalsegmentator:example_ct",)), ct)
    print(f"example_ct without its own atlas (leave-one-out: the DICOM patient's and the synthetic atlases): "
          f"{t_loo:.2f} s, {describe(loo, cases[0][2])} {loo.reason[:80]}"
          + "".join(f"; {s}: {p.note[:60]}" for s, p in loo.sides.items() if p.status != "proposed"))
    loo, t_loo = timed(lambda v: propose(v, exclude_sources=("totalsegmentator:example_ct_dicom",)), dicom)
    print(f"example_ct_dicom without its own atlas (leave-one-out): {t_loo:.2f} s, {describe(loo, cases[1][2])}")


if __name__ == "__main__":
    main()
