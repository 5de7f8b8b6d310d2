#!/usr/bin/env python
"""DICOM series -> HU NIfTI: dicom2nifti (the original study's converter) vs ours, same series, side by side.

Each converter runs in its own subprocess (wall time and peak resident memory of that process):
- baseline: ``dicom2nifti.dicom_series_to_nifti(folder, out.nii.gz, reorient_nifti=False)``;
- ours: ``scan_files`` -> ``read_header`` -> ``group_series`` -> ``load_series`` -> ``save_nifti`` (what an
  import does per series, without the database).

Series: the real 20-slice JPEG 2000 TotalSegmentator series, and a 512x512xN uncompressed series (default
N=600) made from the real TotalSegmentator CT upsampled (written once under var/bench-import/).
The check asserts ours is at least as fast and the 512x512x600 peak memory stays under 1.5 GB.

Usage: ``python benchmarks/bench_import.py [--slices 600] [--repeat 1]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OURS = """
import sys, warnings
warnings.simplefilter("ignore")
from inference.ml.dicom import scan_files, read_header, group_series, load_series
from inference.ml.volume import save_nifti
folder, out = sys.argv[1], sys.argv[2]
groups = group_series([read_header(p) for p in scan_files(folder)], folder)
(group,) = groups
save_nifti(load_series(group).volume, out)
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""
BASELINE = """
import sys, warnings
warnings.simplefilter("ignore")
import dicom2nifti
dicom2nifti.dicom_series_to_nifti(sys.argv[1], sys.argv[2], reorient_nifti=False)
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


def run(code: str, folder: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB, the process' VmHWM) of one conversion in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(folder), str(out)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"conversion failed for {folder}:\n{proc.stderr[-3000:]}")
    return seconds, int(proc.stdout.strip().splitlines()[-1]) / 1024


def make_big_series(folder: Path, slices: int) -> Path:
    """512x512xN uncompressed CT made from the real TotalSegmentator CT (upsampled, nearest along z)."""
    marker = folder / ".complete"
    if marker.exists() and marker.read_text() == str(slices):
        return folder
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    from tests.plugins.store import write_ct_series

    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*.dcm"):
        p.unlink()
    img = nib.load(str(REPO / "var/fixtures/totalsegmentator/example_ct.nii.gz"))
    data = np.asanyarray(img.dataobj).astype(np.float32)  # (i, j, k)
    zoomed = {}
    stored = np.empty((slices, 512, 512), np.uint16)
    for k in range(slices):
        src = min(data.shape[2] - 1, int(k * data.shape[2] / slices))
        if src not in zoomed:
            plane = ndimage.zoom(data[:, :, src].T, (512 / data.shape[1], 512 / data.shape[0]), order=1)
            zoomed[src] = np.clip(plane + 1024, 0, 4095).astype(np.uint16)[:512, :512]
        stored[k] = zoomed[src]
    write_ct_series(folder, n=slices, values=stored, rows=512, cols=512, step=0.6, pixel_spacing=(0.7, 0.7),
                    series_number=3, description=f"bench {slices}", shuffle_names=False)
    marker.write_text(str(slices))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=1, help="runs per converter and series (best is kept)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_fixtures

    fetch_fixtures.main()
    series = {
        "real 20-slice JPEG 2000 (512x512x20)": fetch_fixtures.paths()["example_ct_dicom"],
        f"uncompressed 512x512x{args.slices}": make_big_series(REPO / "var" / "bench-import" / "series", args.slices),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in series.items():
            row = {}
            for label, code in (("dicom2nifti", BASELINE), ("ours", OURS)):
                runs = [run(code, folder, Path(tmp) / f"{label}.nii.gz") for _ in range(args.repeat)]
                row[label] = min(runs)
            ratio = row["dicom2nifti"][0] / row["ours"][0]
            results[name] = {"dicom2nifti_s": round(row["dicom2nifti"][0], 2), "ours_s": round(row["ours"][0], 2),
                             "speedup": round(ratio, 2), "dicom2nifti_peak_mb": round(row["dicom2nifti"][1]),
                             "ours_peak_mb": round(row["ours"][1])}
            print(f"{name}: dicom2nifti {row['dicom2nifti'][0]:.2f} s ({row['dicom2nifti'][1]:.0f} MB peak), "
                  f"ours {row['ours'][0]:.2f} s ({row['ours'][1]:.0f} MB peak): ours x{ratio:.2f} "
                  f"{'faster' if ratio >= 1 else 'SLOWER'}")
    print(json.dumps(results, indent=2))
    big = results[f"uncompressed 512x512x{args.slices}"]
    ok = all(r["speedup"] >= 1.0 for r in results.values()) and (args.slices < 600 or big["ours_peak_mb"] < 1536)
    print("OK" if ok else "CHECK FAILED: ours slower than dicom2nifti or over 1.5 GB")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
