"""``--base real``: lesions inserted into the real TotalSegmentator example CT on its adrenal masks."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from inference.ml.geometry import lps_to_voxel, voxel_to_lps
from inference.ml.volume import Volume, load_nifti

from .acquisition import Acquisition
from .anatomy import Anatomy
from .canvas import ellipsoid
from .lesions import LesionSpec, lesion_value
from .scan import LesionTruth, SyntheticScan, Truth, _box_of
from .tissues import LESION_TYPES

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "var" / "fixtures" / "totalsegmentator"


def make_real_patient(seed: int, *, abnormal: bool, fixtures_dir: str | os.PathLike | None = None,
                      lesion: dict | None = None) -> SyntheticScan:
    """The example CT (``example_ct_sm.nii.gz``, the grid of its masks) with, when ``abnormal``, an ovoid lesion grown from a voxel of
    the chosen side's adrenal mask (``example_seg_fast/adrenal_gland_{right,left}.nii.gz``); mild extra noise
    so copies differ. Fetch the fixtures first (``scripts/fetch_fixtures.py``)."""
    root = Path(fixtures_dir) if fixtures_dir else DEFAULT_DIR
    ct, seg = root / "example_ct_sm.nii.gz", root / "example_seg_fast"  # the masks are on the _sm grid
    if not ct.exists():
        raise FileNotFoundError(f"{ct} is missing: run `python scripts/fetch_fixtures.py` first")
    vol = load_nifti(ct)
    arr = vol.array.astype(np.float32)
    masks: dict[str, np.ndarray] = {}
    for side, name in (("R", "right"), ("L", "left")):
        m = load_nifti(seg / f"adrenal_gland_{name}.nii.gz", dtype=np.uint8).array > 0
        if m.shape != arr.shape:
            raise ValueError(f"adrenal mask {name} does not match the CT's grid")
        if m.any():
            masks[f"gland_{side}"] = m
    rng = np.random.default_rng([seed, 23])
    lesion = dict(lesion or {})
    lesions: list[LesionTruth] = []
    if abnormal:
        side = lesion.get("side") or ("B" if rng.random() < 0.1 else str(rng.choice(["R", "L"])))
        for s in (["R", "L"] if side == "B" else [side]):
            gm = masks.get(f"gland_{s}")
            if gm is None:
                continue
            kji = np.argwhere(gm)
            seed_vox = kji[int(rng.integers(len(kji)))][::-1]
            p = voxel_to_lps(vol.affine, seed_vox)
            d1 = lesion.get("diameter_mm") or (rng.uniform(8, 12) if rng.random() < 0.4
                                               else float(np.exp(rng.uniform(np.log(12), np.log(45)))))
            typ = lesion.get("type") or str(rng.choice(list(LESION_TYPES)))
            semi = np.array([d1, d1 * rng.uniform(0.75, 1), d1 * rng.uniform(0.75, 1)]) / 2
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            lo_hu, hi_hu = LESION_TYPES[typ]
            spec = LesionSpec(s, typ, p + direction * semi.min() * 0.4, semi, float(rng.uniform(0, np.pi)),
                              float(rng.uniform(lo_hu + 2, hi_hu - 2)), rng.uniform(0, 2 * np.pi, 3))
            f, lo, hi = ellipsoid(spec.centre, spec.semi, spec.angle)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            ijk = lps_to_voxel(vol.affine, corners)
            a = np.clip(np.floor(ijk.min(0)).astype(int) - 1, 0, None)
            b = np.minimum(np.ceil(ijk.max(0)).astype(int) + 2, np.array(arr.shape[::-1]))
            kk, jj, ii = np.meshgrid(*(np.arange(a[n], b[n]) for n in (2, 1, 0)), indexing="ij")
            xyz = voxel_to_lps(vol.affine, np.stack([ii, jj, kk], -1).astype(float))
            d = f(xyz[..., 0], xyz[..., 1], xyz[..., 2])
            alpha = np.clip(0.5 + d / float(vol.spacing.min()), 0, 1)
            sub = (slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0]))
            val = lesion_value(spec)(xyz[..., 0], xyz[..., 1], xyz[..., 2], d)
            region = arr[sub]
            region += alpha * (val - region)
            inside = d >= 0
            core = inside & (d >= 1.8) if typ == "cyst" else inside
            if core.any():
                region[core] += np.float32(spec.mean_hu - float(region[core].mean()))
            lm = np.zeros(arr.shape, bool)
            lm[sub] = inside
            masks[f"lesion_{s}"] = lm | masks.get(f"lesion_{s}", False)
            masks[f"gland_{s}"] = gm & ~lm
            lesions.append(LesionTruth(s, typ, tuple(float(v) for v in spec.centre), tuple(float(2 * v) for v in semi),
                                       round(spec.mean_hu, 1), _box_of(lm, vol.affine)))
    arr += np.random.default_rng([seed, 29]).normal(0, 5, arr.shape).astype(np.float32)
    glands = {}
    for s in ("R", "L"):
        parts = [masks[k] for k in (f"gland_{s}", f"lesion_{s}") if k in masks]
        glands[s] = _box_of(np.logical_or.reduce(parts), vol.affine) if parts else None
    out = Volume(np.rint(np.clip(arr, -1024, 3071)).astype(np.int16), vol.affine)
    sp = vol.spacing
    acq = Acquisition(matrix=int(arr.shape[2]), pixel_mm=float(sp[0]), slice_mm=float(sp[2]), coverage="abdomen",
                      phase="portal_venous", noise_hu=5.0, theta=0.0, shift=(0.0, 0.0, 0.0), kvp=120, kernel="REAL")
    return SyntheticScan(seed=seed, label="abnormal" if abnormal else "normal", volume=out,
                         truth=Truth(glands=glands, lesions=lesions), acquisition=acq,
                         anatomy=Anatomy(1, 1, 1, 0, 0), labels=np.zeros((1, 1, 1), np.uint8), masks=masks)
