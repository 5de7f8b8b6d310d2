"""Importing real-world inputs derived from the real TotalSegmentator series (see tests/core/test_dicom_inputs.py
for the reading itself): every image is stored once, re-imports add nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

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
