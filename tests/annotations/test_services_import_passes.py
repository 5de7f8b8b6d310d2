"""Importing series with several passes, odd instances and NIfTIs in other axis orders into the store (issue 11):
one scan per pass with stable keys (re-imports add nothing), odd instances reported one by one, every NIfTI
stored on the canonical axes with its notes, and the import report saying what was split, excluded, resampled
and reoriented."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from django.conf import settings
from pydicom.uid import generate_uid

from annotations.services.crop_tables import ORIGINAL_COLUMNS, import_original, original_rows
from annotations.services.importer import import_path
from annotations.models import CropBox, Dataset, ImportItem, Series, SourceInstance
from inference.ml.geometry import LPS_TO_RAS, Box, box_to_voxels, lps_to_voxel
from inference.ml.volume import load_nifti
from tests.plugins.store import CASES, body_hu, phantom, shared_cases, write_ct_series


pytestmark = pytest.mark.django_db


def stored(series: Series):
    return load_nifti(Path(settings.MEDIA_ROOT) / series.volume.file.name)


def test_shared_multi_pass_series_import_one_scan_per_pass_and_reimport_adds_nothing():
    root = CASES / "multi_pass_series"
    truth = json.loads((root / "truth.json").read_text())
    ds = Dataset.objects.create(name="passes")
    report = import_path(ds, root)
    assert report.counts() == {"imported": 6, "skipped": 1, "failed": 0}  # + truth.json, not DICOM
    for case in truth["series"]:
        series = {s.series_uid: s for s in Series.objects.filter(series_uid__startswith=case["series_uid"])}
        assert len(series) == 2 and all(k.startswith(case["series_uid"] + "#") for k in series)
        for key, s in series.items():
            label = key.split("#", 1)[1]
            assert s.is_scan and s.extra["pass"]["label"] == label and s.extra["pass"]["series_uid"] == case["series_uid"]
            assert s.volume.notes.startswith(f"pass {label} (")
            assert len(set(body_hu(stored(s)))) == 1  # one phase or reconstruction per scan
            item = report.items.get(series=s)
            assert "split by" in item.reason
    assert SourceInstance.objects.count() == 78
    again = import_path(ds, root)
    assert again.counts() == {"imported": 0, "skipped": 7, "failed": 0}
    assert again.items.filter(reason__startswith="already imported").count() == 6
    assert Series.objects.count() == 6 and SourceInstance.objects.count() == 78


def test_odd_instance_is_reported_and_the_series_imported(tmp_path):
    uid, study, frame = generate_uid(), generate_uid(), generate_uid()
    zs = [2.5 * k for k in range(8)]
    write_ct_series(tmp_path / "s", z_positions=zs, values=phantom(zs, 40), rows=12, cols=12, series_uid=uid,
                    study_uid=study, frame_of_reference=frame, name_prefix="M")
    write_ct_series(tmp_path / "s", n=1, rows=12, cols=12, series_uid=uid, study_uid=study, frame_of_reference=frame,
                    orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), name_prefix="A")
    ds = Dataset.objects.create(name="odd")
    report = import_path(ds, tmp_path)
    assert report.counts() == {"imported": 1, "skipped": 1, "failed": 0}
    series = Series.objects.get()
    assert series.series_uid == uid and series.volume.shape[0] == 8 and series.instance_count == 8
    odd = report.items.get(status=ImportItem.Status.SKIPPED)
    assert odd.path == "s/A0000.dcm" and odd.reason.startswith("odd instance A0000.dcm excluded: orientation sagittal")
    assert series.extra["excluded_instances"] == [{"path": "s/A0000.dcm", "reason": odd.reason}]
    again = import_path(ds, tmp_path)  # the odd one is reported again, the series is not imported twice
    assert again.counts() == {"imported": 0, "skipped": 2, "failed": 0}


def test_variable_increment_import_says_it_was_resampled(tmp_path):
    zs = [float(z) for z in range(0, 21)] + [25.0, 30.0, 35.0]
    write_ct_series(tmp_path / "v", z_positions=zs, values=phantom(zs, 40), rows=12, cols=12)
    report = import_path(Dataset.objects.create(name="var"), tmp_path)
    series = Series.objects.get()
    assert series.volume.resampled and series.volume.shape[0] == 36 and series.slice_spacing_mm == 1.0
    assert "variable slice increment (1.00 mm x20, 5.00 mm x3)" in series.volume.notes
    assert "variable slice increment" in report.items.get(series=series).reason


def test_shared_nifti_axis_orders_import_as_one_canonical_volume_and_short_one_refused(tmp_path):
    shared = shared_cases() / "nifti_axis_order"
    truth = {s["patient"]: s for s in json.loads((shared / "truth.json").read_text())["series"]}
    root = tmp_path / "cases"
    for name in truth:
        (root / "normal" / name).mkdir(parents=True)
        shutil.copy(shared / truth[name]["nifti"], root / "normal" / name)
    ds = Dataset.objects.create(name="nifti-orders")
    report = import_path(ds, root)
    assert report.counts() == {"imported": 3, "skipped": 0, "failed": 1}
    failed = report.items.get(status=ImportItem.Status.FAILED)
    assert failed.path.endswith("NII_ZFIRST2.nii.gz") and failed.reason.startswith("too short for 2.5D images: 2 axial")
    arrays = {}
    for s in Series.objects.all():
        name = s.series_description
        vol = stored(s)
        assert s.volume.shape == [112, 101, 122] and s.slice_spacing_mm == 3.0
        for probe in truth[name]["probes"][::10]:
            i, j, k = np.rint(lps_to_voxel(vol.affine, probe["lps"])).astype(int)
            assert vol.array[k, j, i] == probe["hu"]
        arrays[name] = vol.array
        assert s.extra["source_grid"]["axes"] == {"NII_RAS": "RAS", "NII_LPS": "LPS", "NII_ZFIRST": "SAR"}[name]
        if name != "NII_LPS":
            assert s.volume.notes.startswith("reoriented from file axes")
    assert np.array_equal(arrays["NII_RAS"], arrays["NII_LPS"]) and np.array_equal(arrays["NII_RAS"], arrays["NII_ZFIRST"])


def test_crop_tables_index_the_imported_nifti_file_not_the_reoriented_store(realct, tmp_path):
    """The original study's crop tables index the NIfTI file as nibabel loads it; the store keeps the file's own
    grid, so a RAS file (stored flipped onto LPS axes) still gets the voxels its table names, and back."""
    src = tmp_path / "nifti"
    src.mkdir()
    shutil.copy(realct["example_ct_sm"], src / "case7.nii.gz")
    import_path(Dataset.objects.create(name="crops-nifti"), src)
    series = Series.objects.get()
    assert series.extra["source_grid"]["axes"] == "RAS" and "flipped" not in series.volume.notes
    table = tmp_path / "crops.csv"
    table.write_text(",".join(ORIGINAL_COLUMNS) + "\ncase7.nii.gz,R,30,54,40,64,5,25\n")
    result = import_original(table, Series.objects.all())
    assert result.failed == [] and len(result.imported) == 1
    box = CropBox.objects.get(series=series, side="R")
    img = nib.load(src / "case7.nii.gz")
    corners = np.array([[i, j, k] for i in (30, 53) for j in (40, 63) for k in (5, 24)], float)
    lps = corners @ (LPS_TO_RAS @ img.affine)[:3, :3].T + (LPS_TO_RAS @ img.affine)[:3, 3]
    np.testing.assert_allclose(box.lps_min, lps.min(axis=0), atol=1e-4)
    np.testing.assert_allclose(box.lps_max, lps.max(axis=0), atol=1e-4)
    vol = stored(series)  # the store's voxels inside the box are the file's crop, flipped
    lo, hi = box_to_voxels(vol.affine, vol.shape, Box(tuple(box.lps_min), tuple(box.lps_max)))
    crop = vol.array[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1].transpose(2, 1, 0)
    np.testing.assert_array_equal(crop[::-1, ::-1, :], np.asarray(img.dataobj)[30:54, 40:64, 5:25])
    assert original_rows(Series.objects.all()) == [
        {"filename_nii": "case7.nii.gz", "adrenal_LR": "R", "crop_x_min": 30, "crop_x_max": 54, "crop_y_min": 40,
         "crop_y_max": 64, "crop_z_min": 5, "crop_z_max": 25}]
