#!/usr/bin/env python
"""Build the gland-localisation atlases shipped in ``inference/ml/proposals/atlases/`` (a few MB in all).

- ``tsx-example-ct``: the TotalSegmentator example CT (``example_ct.nii.gz``, 3 mm) with its adrenal masks
  (``example_seg_fast_force_split.nii.gz``, labels 8 right, 9 left), from the TotalSegmentator 2.18.0 source
  distribution (Apache-2.0; Wasserthal J. et al., Radiology: AI 2023). Fetched by ``scripts/fetch_fixtures.py``.
- ``tsx-example-ct-dicom``: a second patient, the TotalSegmentator example DICOM series (``example_ct_dicom/``,
  20 JPEG 2000 slices, 0.98 x 0.98 x 2 mm, portal venous: a 40 mm slab through the top of the right adrenal, no
  lung bases, no kidneys) with its multilabel mask (``example_seg_dicom.nii.gz``, label 8 right adrenal; it holds
  no left adrenal, so this atlas votes for the right gland only), from the same source distribution (Apache-2.0).
  The series is read with the app's DICOM reader; the mask's rows are stored flipped relative to the series, so
  its voxels are placed by its own affine (voxel -> LPS), never by index.
- ``synthetic-<seed>``: patients of the ``synthetic`` generator (chest-abdomen-pelvis, no lesion, noiseless,
  1.5 mm pixels, 3 mm slices) with their rendered gland masks. The seeds (``SYNTHETIC_SEEDS``) are used by no
  test and no reported validation cohort.

Each is resampled to a 3 mm LPS-aligned grid (``canonical``), cropped to the body, stored as int16 HU; the gland
masks are kept as the LPS corners of their voxel cells (float32 points).

Usage: ``python scripts/build_proposal_atlases.py [--out DIR]``. Deterministic: same inputs, same files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from inference.ml.geometry import voxel_to_lps  # noqa: E402
from inference.ml.proposals.atlas import ATLAS_DIR, Atlas, save_atlas  # noqa: E402
from inference.ml.proposals.canonical import Canonical, canonical  # noqa: E402
from inference.ml.volume import Volume, load_nifti  # noqa: E402

SYNTHETIC_SEEDS = (7_100_003, 7_100_011, 7_100_017, 7_100_029)
PHASES = ("portal_venous", "non_contrast", "arterial", "portal_venous")
MAX_POINTS = 4000


def cell_points(affine: np.ndarray, mask_kji: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """LPS mm of the corners of each mask voxel's cell (a box around them holds the voxels' cells), thinned to
    at most ``max_points`` while keeping the extreme points on every axis."""
    ijk = np.argwhere(mask_kji)[:, ::-1].astype(float)
    offsets = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    pts = voxel_to_lps(affine, (ijk[:, None, :] + offsets[None]).reshape(-1, 3))
    if len(pts) > max_points:
        keep = set(np.argmin(pts, axis=0).tolist() + np.argmax(pts, axis=0).tolist())
        rng = np.random.default_rng(0)
        keep |= set(rng.choice(len(pts), max_points - len(keep), replace=False).tolist())
        pts = pts[sorted(keep)]
    return pts.astype(np.float32)


def crop_to_body(c: Canonical, margin_mm: float = 12.0) -> Canonical:
    body = (c.hu > -400) & c.valid
    zz, yy, xx = np.nonzero(body)
    m = int(np.ceil(margin_mm / c.step))
    lo = np.maximum([zz.min() - m, yy.min() - m, xx.min() - m], 0)
    hi = np.minimum([zz.max() + m + 1, yy.max() + m + 1, xx.max() + m + 1], c.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return Canonical(hu=c.hu[sl], valid=c.valid[sl], origin=c.origin + c.step * lo[::-1], step=c.step)


def totalsegmentator_atlas(fixtures: dict) -> Atlas:
    ct = load_nifti(fixtures["example_ct"])
    seg = load_nifti(Path(fixtures["seg_dir"]) / "example_seg_fast_force_split.nii.gz", dtype=np.uint8)
    points = {s: cell_points(seg.affine, seg.array == lab) for s, lab in (("R", 8), ("L", 9))}
    return Atlas("tsx-example-ct", crop_to_body(canonical(ct)), points,
                 {"source": "totalsegmentator:example_ct", "licence": "Apache-2.0 (TotalSegmentator 2.18.0 sdist)",
                  "files": "example_ct.nii.gz, example_seg_fast_force_split.nii.gz (8 right, 9 left)"})


def dicom_atlas(fixtures: dict) -> Atlas:
    from inference.ml.dicom import load_folder

    ct = load_folder(fixtures["example_ct_dicom"])
    seg = load_nifti(Path(fixtures["seg_dir"]) / "example_seg_dicom.nii.gz", dtype=np.uint8)
    points = {"R": cell_points(seg.affine, seg.array == 8), "L": np.zeros((0, 3), np.float32)}
    return Atlas("tsx-example-ct-dicom", crop_to_body(canonical(ct)), points,
                 {"source": "totalsegmentator:example_ct_dicom",
                  "licence": "Apache-2.0 (TotalSegmentator 2.18.0 sdist)",
                  "files": "example_ct_dicom/ (20 slices), example_seg_dicom.nii.gz (8 right; no left adrenal)"})


def synthetic_atlas(seed: int, phase: str) -> Atlas:
    from synthetic import make_patient

    scan = make_patient(seed, abnormal=False, coverage="cap", profile="default", matrix=300, pixel_spacing_mm=1.5,
                        slice_spacing_mm=3.0, phase=phase, keep_noiseless=True)
    vol = Volume(scan.noiseless, scan.volume.affine)
    points = {s: cell_points(vol.affine, scan.masks[f"gland_{s}"]) for s in ("R", "L")}
    return Atlas(f"synthetic-{seed}", crop_to_body(canonical(vol)), points,
                 {"source": f"synthetic:{seed}", "licence": "generated (synthetic package, this repository)",
                  "files": f"synthetic.make_patient({seed}, coverage='cap', phase={phase!r}), noiseless"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ATLAS_DIR)
    args = parser.parse_args()
    import fetch_fixtures

    fetch_fixtures.main()
    atlases = [totalsegmentator_atlas(fetch_fixtures.paths()), dicom_atlas(fetch_fixtures.paths())]
    atlases += [synthetic_atlas(seed, phase) for seed, phase in zip(SYNTHETIC_SEEDS, PHASES)]
    for a in atlases:
        path = save_atlas(a, args.out / f"{a.name}.npz")
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {a.scan.shape} voxels, "
              f"{path.stat().st_size / 1e6:.2f} MB, glands {[len(a.points[s]) for s in ('R', 'L')]} points")


if __name__ == "__main__":
    main()
