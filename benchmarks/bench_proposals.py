#!/usr/bin/env python
"""Proposal time per scan on 2 CPU cores: ours (landmarks on a ~3 mm strided view) vs a baseline running the
same landmark search at full resolution, on a clinical-size series.

The series is the real TotalSegmentator CT (example_ct) resampled to about 0.78 x 0.78 mm in-plane and
1.5 mm slices (~488 x 404 x 222, the anatomy unchanged in mm), held in memory as an int16 Volume; both
methods are checked to cover every adrenal-mask voxel. Loading the NIfTI (the same for both) is timed apart.

Usage: ``python benchmarks/bench_proposals.py [--repeats 3] [--threads 2]``
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import fetch_fixtures
    import numpy as np

    from inference.ml.geometry import voxel_to_lps
    from inference.ml.proposals import landmark_boxes
    from inference.ml.proposals.landmarks import find_landmarks
    from inference.ml.volume import load_nifti, save_nifti
    from tests.plugins.proposals import resample

    fetch_fixtures.main()
    paths = fetch_fixtures.paths()
    ct = load_nifti(paths["example_ct"])
    seg = load_nifti(Path(paths["seg_dir"]) / "example_seg_fast_force_split.nii.gz", dtype=np.uint8)
    volume = resample(ct, (0.78, 0.78, 1.5))
    print(f"series {volume.shape[::-1]} (i, j, k), spacing {np.round(volume.spacing, 2).tolist()} mm")
    with tempfile.TemporaryDirectory() as tmp:
        path = save_nifti(volume, Path(tmp) / "scan.nii.gz")
        t = time.perf_counter()
        load_nifti(path)
        load_s = time.perf_counter() - t

    def run(step_mm: float):
        marks = find_landmarks(volume, step_mm=step_mm)
        return landmark_boxes.boxes_from_landmarks(marks)

    results = {}
    for name, step in (("baseline (full resolution)", 0.0), ("ours (3 mm strided view)", 3.0)):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            boxes = run(step)
            times.append(time.perf_counter() - t)
        covered = all(boxes[s].contains(voxel_to_lps(seg.affine, np.argwhere(seg.array == lab)[:, ::-1])).all()
                      for s, lab in (("R", 8), ("L", 9)))
        results[name] = min(times)
        print(f"{name:28s} {min(times):7.2f} s/scan (best of {args.repeats}), glands covered: {covered}")
    base, ours = results.values()
    print(f"loading the NIfTI (both): {load_s:.2f} s")
    print(f"speed-up ours vs baseline: {base / ours:.1f}x; with loading {(base + load_s) / (ours + load_s):.1f}x")


if __name__ == "__main__":
    main()
