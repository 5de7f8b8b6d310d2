"""Per-gland 2.5D images: each side on its own crop and z extent, the left mirrored, geometry back to LPS mm,
the slab reader equal to whole-volume resampling, and reading only the needed region of a stored file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.ml.geometry import Box, lps_to_voxel, voxel_to_lps
from inference.ml.images25d import (build_scan_images, build_side_images, region_needed, sample_grid,
                                    scale_hu)
from inference.ml.volume import Volume, load_nifti, load_nifti_region, save_nifti

SIDE = {"image": {"layout": "side", "side_px": 64, "pixel_spacing_mm": 1.0, "slice_spacing_mm": 3.0}}


def _reference(volume: Volume, xs, ys, zs) -> np.ndarray:
    """Whole-volume float32 map_coordinates: what the builder did before reading slabs."""
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    ijk = lps_to_voxel(volume.affine, np.stack([xx.ravel(), yy.ravel(), zz.ravel()], -1))
    out = ndimage.map_coordinates(volume.array.astype(np.float32), ijk[:, ::-1].T, order=1, mode="constant",
                                  cval=-1024.0, prefilter=False)
    return out.reshape(len(zs), len(ys), len(xs))


@pytest.fixture(scope="module")
def real(realct):
    ct = load_nifti(realct["example_ct"])
    boxes = {}
    for s, n in (("R", "right"), ("L", "left")):
        m = load_nifti(Path(realct["seg_fast"]) / f"adrenal_gland_{n}.nii.gz", dtype=np.uint8)
        boxes[s] = Box.from_points(voxel_to_lps(m.affine, np.argwhere(m.array > 0)[:, ::-1])).expanded(8.0)
    return ct, boxes


def test_slab_resampling_equals_whole_volume_resampling(real):
    ct, boxes = real
    lo, hi = np.array(ct.affine[:3, 3]), voxel_to_lps(ct.affine, np.array(ct.shape[::-1]) - 1)
    for box in (*boxes.values(), Box(tuple(np.minimum(lo, hi) - 20), tuple(np.minimum(lo, hi) + 30))):  # + an edge
        xs = box.centre[0] + np.linspace(-40, 40, 50)
        ys = box.centre[1] + np.linspace(-40, 40, 50)
        zs = np.linspace(box.lps_min[2] - 3, box.lps_max[2] + 3, 7)
        assert np.allclose(sample_grid(ct, xs, ys, zs), _reference(ct, xs, ys, zs), atol=1e-3)
        # an oblique copy goes through map_coordinates on its slab: same as the whole volume
        rot = np.eye(4)
        rot[:2, :2] = [[np.cos(0.2), -np.sin(0.2)], [np.sin(0.2), np.cos(0.2)]]
        oblique = Volume(ct.array, rot @ ct.affine)
        assert np.allclose(sample_grid(oblique, xs, ys, zs), _reference(oblique, xs, ys, zs), atol=1e-3)


def test_each_side_has_its_own_z_extent_and_channels(real):
    ct, boxes = real
    sides = build_scan_images(ct, boxes, SIDE)
    for s, si in sides.items():
        assert si.images.shape[1:] == (3, 64, 64) and si.images.dtype == np.float32
        assert boxes[s].lps_min[2] - 1e-6 <= si.z_mm[0] and si.z_mm[-1] <= boxes[s].lps_max[2] + 1e-6
        assert np.allclose(np.diff(si.z_mm), 3.0)
        # consecutive images share planes: channel 2 of one is channel 1 of the next, and so on
        assert np.array_equal(si.images[1:, 0], si.images[:-1, 1])
        assert 0.0 <= si.images.min() and si.images.max() <= 1.0
    # a stride of two slices: every other centre, the same planes
    wide = build_side_images(ct, boxes["R"], "R", {"image": SIDE["image"] | {"stride_mm": 6.0}})
    assert np.allclose(np.diff(wide.z_mm), 6.0) and len(wide.images) == (len(sides["R"].images) + 1) // 2
    assert np.array_equal(wide.images[0], sides["R"].images[0])
    assert np.array_equal(wide.images[1, 0], wide.images[0, 2])  # the planes tile: each slice shown once


def test_left_is_mirrored_and_pixels_map_back_to_lps():
    """A bright dot 15 mm LATERAL of each box centre must land on the image's left on both sides, and the
    builder's pixel_to_lps must give the dot's position back."""
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    aff[:3, 3] = (-100, -100, -40)
    arr = np.full((41, 251, 251), -100, np.int16)
    boxes = {"R": Box((-60, -20, -10), (-20, 20, 10)), "L": Box((20, -20, -10), (60, 20, 10))}
    dots = {"R": (-55.0, 4.0, 0.0), "L": (55.0, 4.0, 0.0)}  # lateral: -x on the right, +x on the left
    for p in dots.values():
        i, j, k = np.rint(lps_to_voxel(aff, p)).astype(int)
        arr[k - 1:k + 2, j - 2:j + 3, i - 2:i + 3] = 400
    sides = build_scan_images(Volume(arr, aff), boxes, SIDE)
    for s, si in sides.items():
        n = int(np.argmin(np.abs(si.z_mm - 0.0)))
        img = si.images[n, 1]
        r, c = np.unravel_index(int(np.argmax(img)), img.shape)
        assert c < 32 - 10, (s, c)  # lateral on the image's left for both glands
        assert np.allclose(si.pixel_to_lps(n, r, c)[:2], dots[s][:2], atol=1.5), s
        assert si.mirrored == (s == "L")
    # the right side is not mirrored: the image's columns run along +x there
    r_img = sides["R"]
    assert r_img.pixel_to_lps(0, 0, 1)[0] > r_img.pixel_to_lps(0, 0, 0)[0]
    assert sides["L"].pixel_to_lps(0, 0, 1)[0] < sides["L"].pixel_to_lps(0, 0, 0)[0]


def test_hu_window_and_bad_input():
    assert np.allclose(scale_hu(np.array([-1000, -200, 100, 400, 2000], np.int16)), [0, 0, 0.5, 1, 1])
    vol = Volume(np.zeros((10, 20, 20), np.int16), np.eye(4))
    with pytest.raises(ValueError, match="no box for either side"):
        build_scan_images(vol, {"R": None, "L": None}, SIDE)
    with pytest.raises(ValueError, match="side must be"):
        build_side_images(vol, Box((0, 0, 0), (5, 5, 5)), "X", SIDE)
    with pytest.raises(ValueError, match="layout"):
        build_side_images(vol, Box((0, 0, 0), (5, 5, 5)), "R", {"image": {"layout": "diagonal"}})
    one = build_side_images(vol, Box((0, 0, 2), (5, 5, 2)), "R", SIDE)  # a flat box still gives one image
    assert len(one.images) == 1


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_reading_only_the_needed_region_gives_the_same_images(real, tmp_path, suffix):
    ct, boxes = real
    path = save_nifti(ct, tmp_path / "ct.nii.gz")
    if suffix == ".nii":
        import nibabel as nib

        nib.save(nib.load(str(path)), str(tmp_path / "ct.nii"))
        path = tmp_path / "ct.nii"
    cfg = {"image": SIDE["image"] | {"side_px": 96, "pixel_spacing_mm": 0.7}}
    region = load_nifti_region(path, region_needed(boxes, cfg), margin_mm=3.0)
    assert region.array.size < ct.array.size / 4
    whole, part = build_scan_images(ct, boxes, cfg), build_scan_images(region, boxes, cfg)
    for s in ("R", "L"):
        assert np.array_equal(whole[s].images, part[s].images)
    with pytest.raises(ValueError, match="outside the volume"):
        load_nifti_region(path, Box((5000, 5000, 5000), (5010, 5010, 5010)))
