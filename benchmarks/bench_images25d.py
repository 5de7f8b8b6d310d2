#!/usr/bin/env python
"""Building one scan's 2.5D images: the original notebook's crop/zoom/JPEG step vs ``inference.ml.images25d``.

The series is the real TotalSegmentator CT (example_ct) resampled to 512x512 in-plane, 100 slices at 3 mm, with
right/left boxes around its TotalSegmentator adrenal masks (+10 mm), stored as the import area stores volumes
(int16 ``.nii.gz``) and, for comparison, uncompressed (``.nii``).

- baseline, a re-expression of the notebook's step: ``nibabel.load(...).get_fdata()`` (the whole volume as
  float64), each side cropped by voxel indices over the boxes' z range, clipped to [-200, 400] and scaled to
  0..255, every slice zoomed to 120x120 (``scipy.ndimage.zoom``, linear), three consecutive slices saved as a
  JPEG per image;
- ours: ``build_scan_images`` (per-gland layout: only the needed slab is read and converted, separable linear
  resampling, left side mirrored), from the volume in memory; and from the stored file reading only the region
  the images need (``region_needed`` + ``load_nifti_region``).

Prints each time (median of ``--repeat`` runs), the images built and the ratios. Usage:
``python benchmarks/bench_images25d.py [--repeat 5] [--threads 2]``
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def notebook_step(path: Path, voxel_boxes: dict, out_dir: Path, size: int = 120) -> int:
    """The original notebook's step, re-expressed: whole volume as float, crop, zoom per slice, JPEG."""
    import nibabel as nib
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    data = nib.load(str(path)).get_fdata()  # [x, y, z] float64, the whole volume
    n = 0
    for side, (lo, hi) in voxel_boxes.items():
        crop = data[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        crop = (np.clip(crop, -200, 400) + 200) / 600 * 255
        slices = [ndimage.zoom(crop[:, :, k], (size / crop.shape[0], size / crop.shape[1]), order=1)
                  for k in range(crop.shape[2])]
        for k in range(1, len(slices) - 1):
            rgb = np.stack(slices[k - 1:k + 2], axis=-1).clip(0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
            (out_dir / f"{side}_{k:03d}.jpg").write_bytes(buf.getvalue())
            n += 1
    return n


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import nibabel as nib
    import numpy as np
    import torch
    from scipy import ndimage

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_fixtures

    from inference.ml.geometry import Box, box_to_voxels, voxel_to_lps
    from inference.ml.images25d import build_scan_images, region_needed
    from inference.ml.volume import Volume, load_nifti, load_nifti_region, save_nifti

    fetch_fixtures.main()
    paths = fetch_fixtures.paths()
    ct = load_nifti(paths["example_ct"])
    src = ct.array[ct.shape[0] - 100:].astype(np.float32)
    factors = (1.0, 512 / src.shape[1], 512 / src.shape[2])
    big = np.rint(ndimage.zoom(src, factors, order=1)).astype(np.int16)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ np.array([0, 0, ct.shape[0] - 100]) + ct.affine[:3, 3]
    affine[:3, 0] /= factors[2]
    affine[:3, 1] /= factors[1]
    vol = Volume(big, affine)
    boxes = {}
    for side, name in (("R", "right"), ("L", "left")):
        m = load_nifti(Path(paths["seg_fast"]) / f"adrenal_gland_{name}.nii.gz", dtype=np.uint8)
        kji = np.argwhere(m.array > 0)
        boxes[side] = Box.from_points(voxel_to_lps(m.affine, kji[:, ::-1])).expanded(10.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-images25d-"))
    gz, raw = tmp / "scan.nii.gz", tmp / "scan.nii"
    save_nifti(vol, gz)
    nib.save(nib.load(str(gz)), str(raw))
    voxel_boxes = {s: box_to_voxels(vol.affine, vol.shape, b) for s, b in boxes.items()}
    jpeg_dir = tmp / "jpeg"
    jpeg_dir.mkdir()
    cfg = {"image": {"layout": "side", "side_px": 120, "pixel_spacing_mm": 0.7, "slice_spacing_mm": 3.0}}
    region = region_needed(boxes, cfg)

    def ours_file(path: Path):
        return build_scan_images(load_nifti_region(path, region, margin_mm=3.0), boxes, cfg)

    t_base, n_base = timed(lambda: notebook_step(gz, voxel_boxes, jpeg_dir), max(1, args.repeat // 2))
    t_mem, sides = timed(lambda: build_scan_images(vol, boxes, cfg), args.repeat)
    t_gz, sides_gz = timed(lambda: ours_file(gz), args.repeat)
    t_raw, sides_raw = timed(lambda: ours_file(raw), args.repeat)
    same = all(np.array_equal(sides[s].images, sides_raw[s].images) and np.array_equal(sides[s].images,
                                                                                       sides_gz[s].images) for s in sides)
    n_ours = sum(len(s.images) for s in sides.values())
    print(f"series {big.shape[::-1]} (i, j, k) at {np.round(vol.spacing, 3).tolist()} mm; boxes R "
          f"{np.round(boxes['R'].size_mm, 1).tolist()} L {np.round(boxes['L'].size_mm, 1).tolist()} mm; "
          f"{args.threads} threads")
    print(f"baseline notebook step (.nii.gz, whole volume float64, zoom, JPEG): {t_base:7.3f} s, {n_base} images")
    print(f"ours, volume in memory:                          {t_mem:7.3f} s, {n_ours} images   "
          f"ratio {t_base / t_mem:6.1f}x")
    print(f"ours, region read from the stored .nii.gz:       {t_gz:7.3f} s                "
          f"ratio {t_base / t_gz:6.1f}x")
    print(f"ours, region read from an uncompressed .nii:     {t_raw:7.3f} s                "
          f"ratio {t_base / t_raw:6.1f}x")
    print(f"images from the region read = images from the whole volume: {same}")


if __name__ == "__main__":
    main()
