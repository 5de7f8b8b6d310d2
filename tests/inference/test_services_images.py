"""The 2.5D builder: shapes, HU scaling and left/right placement on a real CT, and the image job's storage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.ml.geometry import Box, voxel_to_lps
from inference.ml.images25d import build_images
from inference.ml.volume import Volume, load_nifti


def _mask_box(mask: Volume, margin: float = 8.0) -> Box:
    kji = np.argwhere(mask.array > 0)
    return Box.from_points(voxel_to_lps(mask.affine, kji[:, ::-1])).expanded(margin)


@pytest.fixture(scope="module")
def real(realct):
    ct = load_nifti(realct["example_ct"])
    masks = {s: load_nifti(Path(realct["seg_fast"]) / f"adrenal_gland_{n}.nii.gz", dtype=np.uint8)
             for s, n in (("R", "right"), ("L", "left"))}
    return ct, masks, {s: _mask_box(m) for s, m in masks.items()}


def test_real_ct_shapes_and_channels(real):
    ct, _, boxes = real
    images, z = build_images(ct, boxes, {})
    assert images.dtype == np.float32 and images.ndim == 4 and images.shape[1:] == (3, 120, 240)
    assert len(z) == len(images) >= 3
    assert np.allclose(np.diff(z), 3.0)
    lo = min(b.lps_min[2] for b in boxes.values())
    hi = max(b.lps_max[2] for b in boxes.values())
    assert lo <= z[0] - 3 and z[-1] + 3 <= hi + 1e-6
    assert np.array_equal(images[1:, 0], images[:-1, 1]) and np.array_equal(images[1:, 1], images[:-1, 2])
    assert images.min() >= 0.0 and images.max() <= 1.0
    small, _ = build_images(ct, boxes, {"image": {"side_px": 64, "slice_spacing_mm": 5.0}})
    assert small.shape[1:] == (3, 64, 128) and len(small) < len(images)


def test_real_ct_left_right_placement_and_hu_scaling(real):
    ct, masks, boxes = real
    images, _ = build_images(ct, boxes, {})
    # the same crops of the right gland's mask painted as 400 HU: it must fall on the image's LEFT half
    for side, mask in masks.items():
        painted = Volume(np.where(mask.array > 0, 400, -200).astype(np.int16), mask.affine)
        m_img, _ = build_images(painted, boxes, {})
        inside = m_img[:, 1] > 0.5
        left, right = inside[..., :120].sum(), inside[..., 120:].sum()
        assert (left > 50 * max(right, 1)) if side == "R" else (right > 50 * max(left, 1)), (side, left, right)
        # CT pixels where the gland is: adrenal soft tissue, HU ~ -50..150 -> (HU + 200) / 600
        hu = images[:, 1][inside] * 600 - 200
        assert -60 < np.median(hu) < 160, (side, np.median(hu))
    # HU window: constant volumes map exactly onto [0, 1]
    for hu, expected in ((-1000, 0.0), (-200, 0.0), (100, 0.5), (400, 1.0), (2000, 1.0)):
        const = Volume(np.full(ct.shape, hu, np.int16), ct.affine)
        img, _ = build_images(const, boxes, {"image": {"side_px": 32}})
        centre = img[:, :, 8:24, 8:24]  # well inside the volume on the right side
        assert np.allclose(centre, expected, atol=1e-5), hu


def test_bad_boxes_are_named():
    vol = Volume(np.zeros((10, 20, 20), np.int16), np.eye(4))
    with pytest.raises(ValueError, match="no box for side L"):
        build_images(vol, {"R": Box((0, 0, 0), (5, 5, 5))}, {})
    with pytest.raises(ValueError, match="fewer than 3 slices"):
        build_images(vol, {"R": Box((0, 0, 0), (5, 5, 2)), "L": Box((8, 0, 0), (12, 5, 2))}, {})


def test_image_job_stores_rows_is_idempotent_and_rebuilds_on_box_change(db, settings, tmp_path, training_cohort,
                                                                       django_capture_on_commit_callbacks):
    from annotations.services.boxes import save_box
    from adrenal_site.jobs.models import Job
    from inference.models import Image25D
    from inference.tasks import build_images_job

    settings.MEDIA_ROOT = tmp_path
    ds = training_cohort("img-ds", n_patients=2, build=False)
    job = Job.objects.create(kind="images25d", params={})
    r1 = build_images_job.job_fn(job, dataset_id=ds.pk, image={"side_px": 16, "pixel_spacing_mm": 2.0})
    assert r1["built"] == 2 and not r1["errors"]
    rows = list(Image25D.objects.filter(series__study__patient__dataset=ds))
    assert len(rows) == r1["images"] > 0
    arr = np.load(tmp_path / rows[0].file.name)
    assert arr.dtype == np.float16 and arr.shape == (3, 16, 32)
    assert (tmp_path / rows[0].thumbnail.name).is_file()
    r2 = build_images_job.job_fn(job, dataset_id=ds.pk, image={"side_px": 16, "pixel_spacing_mm": 2.0})
    assert r2["skipped"] == 2 and r2["built"] == 0
    assert [r.pk for r in Image25D.objects.filter(series__study__patient__dataset=ds)] == [r.pk for r in rows]
    # a changed box queues a rebuild of that scan
    settings.ADRENAL_AUTO_REBUILD_IMAGES = True
    series = rows[0].series
    with django_capture_on_commit_callbacks(execute=False):
        save_box(series, "R", (-42, -10, -18), (-16, 14, 15), status="confirmed")
    queued = Job.objects.filter(kind="images25d", status="queued").exclude(pk=job.pk)
    assert [j.params["series_ids"] for j in queued] == [[series.pk]]
    r3 = build_images_job.job_fn(queued[0], **queued[0].params | {"image": {"side_px": 16, "pixel_spacing_mm": 2.0}})
    assert r3["built"] == 1
    assert not Image25D.objects.filter(pk__in=[r.pk for r in rows if r.series_id == series.pk]).exists()
    # a scan without boxes is reported, the others still built
    series.boxes.all().delete()
    r4 = build_images_job.job_fn(job, dataset_id=ds.pk, image={"side_px": 16, "pixel_spacing_mm": 2.0})
    assert len(r4["errors"]) == 1 and "boxes on both sides" in r4["errors"][0]["error"] and r4["skipped"] == 1


def _boxed_blank_scan(settings, tmp_path, dataset: str):
    """A stored 40 mm cube of 0 HU (1 mm voxels) with both glands' boxes confirmed, images not built, under
    ``tmp_path/media``."""
    from adrenal_site.storage import local_path
    from annotations.models import Volume as VolumeRow
    from annotations.services.boxes import save_box
    from inference.ml.volume import save_nifti
    from tests.factories import make_dataset, make_series

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ADRENAL_AUTO_REBUILD_IMAGES = False
    series = make_series(make_dataset(dataset), "P001")
    affine = np.eye(4)
    save_nifti(Volume(np.zeros((40, 40, 40), np.int16), affine), local_path("volumes/v.nii.gz"))
    VolumeRow.objects.create(series=series, file="volumes/v.nii.gz", shape=[40, 40, 40], spacing_mm=[1.0] * 3,
                             affine=affine.tolist())
    for side, x in (("R", 2.0), ("L", 22.0)):
        save_box(series, side, [x, 5, 5], [x + 12, 20, 20], status="confirmed")
    return series


def test_a_build_whose_scan_is_deleted_meanwhile_leaves_no_images_behind(db, settings, tmp_path, monkeypatch):
    """A scan deleted while its 2.5D images were built: the .npy and thumbnails were written before the rows,
    whose write then failed (no such scan), and stayed under images25d/<id>/ with no row holding them: slices of a
    patient's CT that no deletion reaches. They go with the failed write."""
    from adrenal_site.storage import local_path
    from inference.services import images as svc

    series = _boxed_blank_scan(settings, tmp_path, "img-gone")
    real_build = svc.build_images

    def build_then_scan_deleted(*args, **kwargs):
        out = real_build(*args, **kwargs)
        type(series).objects.filter(pk=series.pk).delete()  # an admin deletes the scan while the job builds
        return out

    monkeypatch.setattr(svc, "build_images", build_then_scan_deleted)
    with pytest.raises(type(series).DoesNotExist):
        svc.build_series(type(series).objects.select_related("volume").get(pk=series.pk),
                         {"side_px": 16, "slice_spacing_mm": 5.0})
    assert not [p for p in local_path("images25d").rglob("*") if p.is_file()]


def test_a_build_overtaken_by_a_box_edit_does_not_replace_the_newer_images(db, settings, tmp_path, monkeypatch):
    """Two image jobs of one scan (a box moved while the first was building: the move queues the second): the
    second, from the new box, finishes first; the first then must not put its images of the old box back (it
    did, and deleted the newer ones' folder: the scan's images no longer matched its boxes)."""
    from adrenal_site.storage import local_path
    from annotations.services.boxes import save_box
    from inference.models import Image25D
    from inference.services import images as svc

    series = _boxed_blank_scan(settings, tmp_path, "img-race")
    cfg = {"side_px": 16, "slice_spacing_mm": 5.0}
    real_build = svc.build_images
    overtaken = []

    def build_then_overtaken(*args, **kwargs):
        out = real_build(*args, **kwargs)
        if not overtaken:  # while this (first) job builds, the box moves and the second job builds and commits
            overtaken.append(save_box(series, "R", [3.0, 5, 5], [15.0, 20, 20], status="confirmed"))
            fresh = type(series).objects.select_related("volume").get(pk=series.pk)
            assert svc.build_series(fresh, cfg).get("built")
        return out

    monkeypatch.setattr(svc, "build_images", build_then_overtaken)
    first = svc.build_series(type(series).objects.select_related("volume").get(pk=series.pk), cfg)
    assert "error" in first and "changed" in first["error"], first
    current = svc.version_key(svc.boxes_for(series), cfg)
    rows = list(Image25D.objects.filter(series=series))
    assert rows and {r.boxes_version for r in rows} == {current}
    assert all(local_path(r.file.name).is_file() for r in rows)
    # the overtaken build's files are gone; no half-written temporary file is left
    assert sorted(p.name for p in local_path(f"images25d/{series.pk}").iterdir()) == [rows[0].file.name.split("/")[-2]]
    assert not list(local_path("images25d").rglob(".tmp-*"))
