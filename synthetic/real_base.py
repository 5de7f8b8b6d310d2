"""``--base real``: lesions inserted into real TotalSegmentator CTs on their adrenal masks.

Two real patients (TotalSegmentator 2.18.0 source package, Apache-2.0):

- ``example_ct`` (:func:`make_real_patient`): ``example_ct_sm.nii.gz``, unenhanced, 3 mm isotropic, both adrenal
  masks (``example_seg_fast``). The quality benchmark's real anatomy: no pretraining sees it.
- ``example_ct_dicom`` (:func:`make_dicom_patient`): the 20-slice JPEG 2000 series, portal venous, 0.98 x 0.98 x
  2 mm, the right adrenal (label 8 of ``example_seg_dicom.nii.gz``). Another patient; the lesion detector's
  pretraining may use it (``scripts/pretrain_lesion_net.py``), so it is never a test of that detector.
"""
from __future__ import annotations

import os
from functools import lru_cache
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

# example_seg_dicom labels (TotalSegmentator v2 "total") whose unenhanced HU differs from the portal venous
# phase, with a typical unenhanced median: liver, spleen, aorta, IVC, portal/splenic vein, pancreas, stomach wall
UNENHANCED_HU = {5: 55.0, 1: 45.0, 52: 40.0, 63: 38.0, 64: 38.0, 7: 40.0, 6: 35.0, 8: 25.0}


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
    lesions = insert_lesions(arr, vol.affine, masks, rng, abnormal=abnormal, lesion=lesion)
    arr += np.random.default_rng([seed, 29]).normal(0, 5, arr.shape).astype(np.float32)
    return _scan(seed, abnormal, arr, vol.affine, masks, lesions, phase="non_contrast", noise_hu=5.0)


@lru_cache(maxsize=2)
def _dicom_patient(root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(HU int16 [k, j, i], affine, labels uint8 on the same grid)`` of the example DICOM series."""
    from inference.ml.dicom import load_folder

    folder = Path(root) / "example_ct_dicom"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: run `python scripts/fetch_fixtures.py` first")
    vol = load_folder(folder)
    seg = load_nifti(Path(root) / "example_seg_dicom.nii.gz", dtype=np.uint8)
    return vol.array, vol.affine, resample_labels(seg.array, seg.affine, vol.shape, vol.affine)


def resample_labels(labels: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int],
                    target_affine: np.ndarray) -> np.ndarray:
    """``labels`` ``[k, j, i]`` on ``affine`` looked up at each voxel centre of the target grid (nearest
    neighbour, 0 outside): a mask stored with its rows flipped or on another grid lands on the CT's voxels."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    lps = voxel_to_lps(target_affine, np.stack([i, j, k], -1).reshape(-1, 3).astype(float))
    src = np.rint(lps_to_voxel(affine, lps)).astype(int)
    ok = np.all((src >= 0) & (src < np.array(labels.shape[::-1])), axis=1)
    out = np.zeros(len(src), labels.dtype)
    out[ok] = labels[src[ok, 2], src[ok, 1], src[ok, 0]]
    return out.reshape(shape)


def _block_mean(arr: np.ndarray, fk: int, fj: int, fi: int) -> np.ndarray:
    k, j, i = (n // f * f for n, f in zip(arr.shape, (fk, fj, fi)))
    a = arr[:k, :j, :i]
    return a.reshape(k // fk, fk, j // fj, fj, i // fi, fi).mean(axis=(1, 3, 5))


def _coarser(arr: np.ndarray, affine: np.ndarray, labels: np.ndarray, fk: int, fij: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels merged ``fij`` x ``fij`` in plane and ``fk`` along z by averaging (partial volume as a scanner
    with larger detectors would record it); labels by the centre voxel of each block; the affine's origin moved
    to the new voxel centres."""
    if fk == 1 and fij == 1:
        return arr, affine, labels
    out = _block_mean(arr, fk, fij, fij)
    lab = labels[fk // 2::fk, fij // 2::fij, fij // 2::fij][:out.shape[0], :out.shape[1], :out.shape[2]]
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] * np.array([fij, fij, fk])
    aff[:3, 3] = voxel_to_lps(affine, np.array([(fij - 1) / 2, (fij - 1) / 2, (fk - 1) / 2]))
    return out, aff, lab


def make_dicom_patient(seed: int, *, abnormal: bool, fixtures_dir: str | os.PathLike | None = None,
                       lesion: dict | None = None) -> SyntheticScan:
    """The second real patient: the example DICOM series with, when ``abnormal``, a lesion grown from its right
    adrenal (the only gland its mask holds; ``lesion["side"]`` other than R is refused), drawn as
    :func:`make_real_patient` draws them. Each copy varies as scanners do: voxels merged to 0.98-2.9 mm in plane
    and 2-4 mm along z (partial volume), the portal venous phase or an unenhanced one (the enhancing organs of
    its mask moved to unenhanced HU, their texture kept), and 4-12 HU of noise."""
    root = Path(fixtures_dir) if fixtures_dir else DEFAULT_DIR
    base, affine, labels = _dicom_patient(str(root))
    rng = np.random.default_rng([seed, 31])
    arr = base.astype(np.float32)
    unenhanced = bool(rng.random() < 0.5)
    if unenhanced:
        for lab, hu in UNENHANCED_HU.items():
            m = labels == lab
            if m.any():
                arr[m] += np.float32(hu - float(np.median(arr[m])))
    fij = int(rng.choice([1, 1, 2, 3]))
    fk = int(rng.choice([1, 2]))
    arr, affine, labels = _coarser(arr, affine, labels, fk, fij)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    masks = {"gland_R": labels == 8}
    lesion = dict(lesion or {})
    if lesion.get("side", "R") != "R":
        raise ValueError("the example DICOM series' mask holds the right adrenal only")
    lesions = insert_lesions(arr, affine, masks, rng, abnormal=abnormal, lesion=lesion | {"side": "R"})
    noise = float(rng.uniform(4, 12))
    arr += np.random.default_rng([seed, 37]).normal(0, noise, arr.shape).astype(np.float32)
    return _scan(seed, abnormal, arr, affine, masks, lesions, phase="non_contrast" if unenhanced else "portal_venous",
                 noise_hu=noise)


def insert_lesions(arr: np.ndarray, affine: np.ndarray, masks: dict[str, np.ndarray], rng: np.random.Generator, *,
                   abnormal: bool, lesion: dict | None = None) -> list[LesionTruth]:
    """When ``abnormal``, grow an ovoid lesion (``synthetic.tissues.LESION_TYPES``, 8-45 mm) from a random voxel
    of one side's gland mask (both sides one time in ten), in place in ``arr`` (HU float32 ``[k, j, i]``);
    ``masks`` gains ``lesion_{side}`` and its gland loses the lesion's voxels. ``lesion`` fixes ``side``,
    ``diameter_mm`` or ``type``. Returns each lesion's truth."""
    spacing_min = float(np.linalg.norm(affine[:3, :3], axis=0).min())
    lesion = dict(lesion or {})
    lesions: list[LesionTruth] = []
    if not abnormal:
        return lesions
    side = lesion.get("side") or ("B" if rng.random() < 0.1 else str(rng.choice(["R", "L"])))
    for s in (["R", "L"] if side == "B" else [side]):
        gm = masks.get(f"gland_{s}")
        if gm is None:
            continue
        kji = np.argwhere(gm)
        seed_vox = kji[int(rng.integers(len(kji)))][::-1]
        p = voxel_to_lps(affine, seed_vox)
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
        ijk = lps_to_voxel(affine, corners)
        a = np.clip(np.floor(ijk.min(0)).astype(int) - 1, 0, None)
        b = np.minimum(np.ceil(ijk.max(0)).astype(int) + 2, np.array(arr.shape[::-1]))
        if np.any(b <= a):
            continue
        kk, jj, ii = np.meshgrid(*(np.arange(a[n], b[n]) for n in (2, 1, 0)), indexing="ij")
        xyz = voxel_to_lps(affine, np.stack([ii, jj, kk], -1).astype(float))
        d = f(xyz[..., 0], xyz[..., 1], xyz[..., 2])
        alpha = np.clip(0.5 + d / spacing_min, 0, 1)
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
                                   round(spec.mean_hu, 1), _box_of(lm, affine)))
    return lesions


def _scan(seed: int, abnormal: bool, arr: np.ndarray, affine: np.ndarray, masks: dict[str, np.ndarray],
          lesions: list[LesionTruth], *, phase: str, noise_hu: float) -> SyntheticScan:
    glands = {}
    for s in ("R", "L"):
        parts = [masks[k] for k in (f"gland_{s}", f"lesion_{s}") if k in masks]
        glands[s] = _box_of(np.logical_or.reduce(parts), affine) if parts else None
    out = Volume(np.rint(np.clip(arr, -1024, 3071)).astype(np.int16), affine)
    sp = out.spacing
    acq = Acquisition(matrix=int(arr.shape[2]), pixel_mm=float(sp[0]), slice_mm=float(sp[2]), coverage="abdomen",
                      phase=phase, noise_hu=noise_hu, theta=0.0, shift=(0.0, 0.0, 0.0), kvp=120, kernel="REAL")
    return SyntheticScan(seed=seed, label="abnormal" if abnormal else "normal", volume=out,
                         truth=Truth(glands=glands, lesions=lesions), acquisition=acq,
                         anatomy=Anatomy(1, 1, 1, 0, 0), labels=np.zeros((1, 1, 1), np.uint8), masks=masks)
