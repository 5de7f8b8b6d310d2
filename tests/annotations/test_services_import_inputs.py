"""Importing real-world inputs derived from the real TotalSegmentator series (see tests/core/test_dicom_inputs.py
for the reading itself): every image is stored once, re-imports add nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.conf import settings

from annotations.models import Dataset, Series, SourceInstance
from annotations.services.importer import import_path
from inference.ml.volume import load_nifti

pytestmark = pytest.mark.django_db


def test_two_images_sharing_a_uid_are_imported_once_each_and_reimport_adds_nothing(realct, tmp_path):
    from django.conf import settings

    folder = tmp_path / "s"
    folder.mkdir()
    uid = None
    for i, p in enumerate(sorted(realct["example_ct_dicom"].iterdir())):
        ds = pydicom.dcmread(p)
        if i == 9:
            uid = ds.file_meta.MediaStorageSOPInstanceUID
        if i == 10:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(folder / p.name)
    dataset = Dataset.objects.create(name="uids")
    report = import_path(dataset, folder)
    assert report.counts() == {"imported": 1, "skipped": 0, "failed": 0}
    item = report.items.get()
    assert "shares SOP Instance UID" in item.reason
    series = Series.objects.get()
    assert series.instance_count == 20 and SourceInstance.objects.filter(series=series).count() == 20
    stored = load_nifti(Path(settings.MEDIA_ROOT) / series.volume.file.name)
    reference = import_path(Dataset.objects.create(name="plain"), realct["example_ct_dicom"])
    plain = load_nifti(Path(settings.MEDIA_ROOT) / reference.items.get().series.volume.file.name)
    assert np.array_equal(stored.array, plain.array)  # slice 10 is its own, not interpolated
    again = import_path(dataset, folder)
    assert again.counts() == {"imported": 0, "skipped": 1, "failed": 0}
    assert Series.objects.filter(study__patient__dataset=dataset).count() == 1


def test_a_second_copy_of_a_series_in_the_same_import_is_reported_not_left_out(realct, tmp_path):
    """The real series in a/ and again in b/ (blank Series UIDs: two series by folder, the same SOP Instance
    UIDs): b/ had no report item at all, as if it were a resumed import's own files. Now it is a skipped item
    naming the folder it was imported from; a resumed import of the same files still adds no item."""
    import shutil

    for name in ("a", "b"):
        shutil.copytree(realct["example_ct_dicom"], tmp_path / "two" / name)
    dataset = Dataset.objects.create(name="copies")
    report = import_path(dataset, tmp_path / "two")
    assert report.counts() == {"imported": 1, "skipped": 1, "failed": 0}
    skipped = report.items.get(status="skipped")
    assert skipped.path.startswith("b ") and "20 of 20 instances have the SOP Instance UIDs of series" in skipped.reason
    assert "imported from a in this import" in skipped.reason
    resumed = import_path(dataset, tmp_path / "two", report=report)  # a re-delivered job resumes: nothing new
    assert resumed.counts() == {"imported": 1, "skipped": 1, "failed": 0}


def test_a_nifti_whose_compression_is_not_what_its_name_says_is_the_same_scan(realct, tmp_path):
    """The real example CT as a plain NIfTI named ``.nii.gz`` and as a gzipped one named ``.nii`` (a renamed or
    hand-decompressed file): each was a failed item ('unreadable NIfTI (ImageFileError: File /tmp/.../x.nii.gz is
    not a gzip file)', naming where the file lay on the server) and the upload form refused them. Read by their
    content, both are the same scan as the file named right; a damaged file's reason names the file, not its
    folder."""
    import gzip

    from annotations.models import ImportItem
    from annotations.services.uploads import UploadRefused, check_nifti

    raw = gzip.decompress(Path(realct["example_ct_sm"]).read_bytes())
    root = tmp_path / "import"
    files = {"right": root / "right" / "ct.nii.gz", "plain": root / "plain" / "ct.nii.gz",
             "gz": root / "gz" / "ct.nii"}
    for path in files.values():
        path.parent.mkdir(parents=True)
    files["right"].write_bytes(Path(realct["example_ct_sm"]).read_bytes())
    files["plain"].write_bytes(raw)
    files["gz"].write_bytes(gzip.compress(raw))
    (root / "cut").mkdir()
    (root / "cut" / "ct.nii.gz").write_bytes(raw[:352 + 1000])  # plain, named .gz, its voxels cut short
    for name in ("plain", "gz"):
        check_nifti(files[name])  # the upload form takes them
    (tmp_path / "junk.nii").write_bytes(gzip.compress(b"\0" * 400))
    with pytest.raises(UploadRefused, match="not a NIfTI file"):
        check_nifti(tmp_path / "junk.nii")
    report = import_path(Dataset.objects.create(name="nifti-names"), root)
    assert report.counts() == {"imported": 3, "skipped": 0, "failed": 1}
    failed = report.items.get(status=ImportItem.Status.FAILED)
    assert failed.path == "cut/ct.nii.gz" and failed.reason.startswith("unreadable NIfTI data")
    assert str(tmp_path) not in failed.reason and "ct.nii.gz" in failed.reason
    arrays = [load_nifti(Path(settings.MEDIA_ROOT) / s.volume.file.name) for s in Series.objects.all()]
    assert len(arrays) == 3 and sorted(s.extra["source_grid"]["file"] for s in Series.objects.all()) == [
        "ct.nii", "ct.nii.gz", "ct.nii.gz"]
    for v in arrays[1:]:
        assert np.array_equal(v.array, arrays[0].array) and np.allclose(v.affine, arrays[0].affine)
