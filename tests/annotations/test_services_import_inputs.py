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


def test_an_image_sent_again_under_a_new_uid_is_left_out_and_a_different_one_refuses_the_series(realct, tmp_path):
    """The real series with one image again under a new SOP Instance UID (a re-send, a re-export), the same
    pixels at the same position: the whole series failed with 'duplicate slice positions: 1 position(s) hold more
    than one image ... no header attribute tells the passes apart'. The copy is now a skipped item naming the image
    it repeats, and the scan is the plain series' volume; re-importing adds nothing. An image at that position whose
    HU differ still refuses the series: nothing says which of the two is the patient's."""
    from django.conf import settings
    from pydicom.uid import generate_uid

    files = sorted(realct["example_ct_dicom"].iterdir())
    root = tmp_path / "import"
    for name, change in (("copy", False), ("other", True)):
        (root / name).mkdir(parents=True)
        series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID if not change else generate_uid()
        for p in files:  # "other": the same images as another series (new series and instance UIDs)
            ds = pydicom.dcmread(p)
            if change:
                ds.SeriesInstanceUID = series_uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(root / name / p.name)
        ds = pydicom.dcmread(root / name / files[10].name)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if change:
            ds.decompress()
            arr = ds.pixel_array.copy()
            arr[100:110, 100:110] += 50
            ds.PixelData = arr.tobytes()
        ds.save_as(root / name / "resent.dcm")
    dataset = Dataset.objects.create(name="resent")
    report = import_path(dataset, root)
    assert report.counts() == {"imported": 1, "skipped": 1, "failed": 1}
    skipped = report.items.get(status="skipped")
    assert skipped.path == "copy/resent.dcm"
    assert skipped.reason == (f"copy of copy/{files[10].name} (same position and the same HU under another SOP "
                              "Instance UID)")
    failed = report.items.get(status="failed")
    assert failed.reason.startswith("duplicate slice positions: 1 position(s) hold more than one image")
    series = Series.objects.get()
    assert "1 image(s) left out as copies of another at the same position with the same HU" in series.volume.notes
    stored = load_nifti(Path(settings.MEDIA_ROOT) / series.volume.file.name)
    reference = import_path(Dataset.objects.create(name="plain"), realct["example_ct_dicom"])
    plain = load_nifti(Path(settings.MEDIA_ROOT) / reference.items.get().series.volume.file.name)
    assert np.array_equal(stored.array, plain.array) and np.allclose(stored.affine, plain.affine)
    again = import_path(dataset, root / "copy")
    assert again.counts()["imported"] == 0
    assert Series.objects.filter(study__patient__dataset=dataset).count() == 1


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


def test_a_nifti_whose_orientation_is_degenerate_is_refused_naming_it(realct, tmp_path):
    """The real example CT with a set sform that is all zeros (a tool that filled the code but not the rows),
    and used through its qform with a voxel size (pixdim) of zero or a negative one: nibabel quietly guesses (1 mm,
    or the absolute value; Analyze-era readers flip an axis), and the zero sform was refused as 'qform (LPS) and
    sform (RRR) give different orientations', the pixdim ones stored on a guessed grid. Each is now refused naming
    what is degenerate; a negative pixdim beside a valid sform (which is what is used) changes nothing."""
    import gzip
    import struct

    import nibabel as nib

    from annotations.models import ImportItem
    from inference.ml.geometry import LPS_TO_RAS

    src = nib.load(realct["example_ct_sm"])
    data, affine = np.asanyarray(src.dataobj), src.affine
    root = tmp_path / "import"

    def write(name: str, qform: bool, sform: str, pixdim1: float | None = None, qfac: float | None = None) -> None:
        img = nib.Nifti1Image(data, affine)
        img.set_qform(affine, code=1 if qform else 0)
        img.set_sform(affine, code=0 if sform == "none" else 1)
        (root / name).mkdir(parents=True)
        nib.save(img, root / name / "ct.nii.gz")
        if sform == "zero" or pixdim1 is not None or qfac is not None:  # edit the saved bytes: nibabel would rewrite (fix) them
            raw = bytearray(gzip.decompress((root / name / "ct.nii.gz").read_bytes()))
            if sform == "zero":
                raw[280:328] = bytes(48)  # srow_x, srow_y, srow_z: 12 float32
            if pixdim1 is not None:
                raw[80:84] = struct.pack("<f", pixdim1)  # pixdim[1]
            if qfac is not None:
                raw[76:80] = struct.pack("<f", qfac)  # pixdim[0]
            (root / name / "ct.nii.gz").write_bytes(gzip.compress(bytes(raw)))

    write("asis", True, "set")
    write("zero_sform", True, "zero")
    write("zero_pixdim", True, "none", 0.0)
    write("negative_pixdim", True, "none", -3.0)
    write("negative_pixdim_sform", True, "set", -3.0)
    write("qfac", True, "none", qfac=-2.0)
    report = import_path(Dataset.objects.create(name="nifti-degenerate"), root)
    assert report.counts() == {"imported": 2, "skipped": 0, "failed": 4}
    reasons = {i.path.split("/")[0]: i.reason for i in report.items.filter(status=ImportItem.Status.FAILED)}
    assert reasons["zero_sform"].startswith("NIfTI sform (scanner) is singular")
    assert reasons["zero_pixdim"].startswith("NIfTI voxel size or qfac not valid (pixdim[1] 0)")
    assert reasons["negative_pixdim"].startswith("NIfTI voxel size or qfac not valid (pixdim[1] -3)")
    assert reasons["qfac"].startswith("NIfTI voxel size or qfac not valid (pixdim[0] (qfac) -2)")
    assert "swap the patient's sides" in reasons["negative_pixdim"]
    arrays = [load_nifti(Path(settings.MEDIA_ROOT) / s.volume.file.name) for s in Series.objects.all()]
    assert np.array_equal(arrays[0].array, arrays[1].array)
    np.testing.assert_allclose(arrays[1].affine, arrays[0].affine)
    np.testing.assert_allclose(arrays[0].affine @ [0, 0, 0, 1], (LPS_TO_RAS @ affine) @ [121, 100, 0, 1])


def test_a_nifti_with_trailing_axes_of_one_is_the_same_scan(realct, tmp_path):
    """The real example CT stored (x, y, z, 1, 1), as tools that keep a time and a vector axis write one volume:
    it failed with 'not a 3D volume (shape (122, 101, 30, 1, 1))' while (x, y, z, 1) was taken. Any trailing axes
    of one are now one volume, the same scan; a second volume on the fourth axis is still refused."""
    import nibabel as nib

    from annotations.models import ImportItem

    src = nib.load(realct["example_ct_sm"])
    data = np.asanyarray(src.dataobj)
    root = tmp_path / "import"
    for name, shape in (("plain", data.shape), ("five", data.shape + (1, 1)), ("two", data.shape[:3] + (2,))):
        (root / name).mkdir(parents=True)
        values = data.reshape(shape) if name != "two" else np.stack([data, data], axis=3)
        img = nib.Nifti1Image(values, src.affine)
        img.set_qform(src.affine, code=1)
        nib.save(img, root / name / "ct.nii.gz")
    report = import_path(Dataset.objects.create(name="nifti-5d"), root)
    assert report.counts() == {"imported": 2, "skipped": 0, "failed": 1}
    failed = report.items.get(status=ImportItem.Status.FAILED)
    assert failed.path == "two/ct.nii.gz" and failed.reason == "not a 3D volume (shape (122, 101, 30, 2))"
    plain, five = [load_nifti(Path(settings.MEDIA_ROOT) / s.volume.file.name) for s in Series.objects.order_by("pk")]
    assert np.array_equal(plain.array, five.array) and np.allclose(plain.affine, five.affine)


def test_other_volume_formats_are_skipped_naming_the_format_and_the_way_in(realct, tmp_path):
    """The real example CT as a NIfTI header/image pair (.hdr/.img), an Analyze pair and a MetaImage: each file was
    skipped as 'not a DICOM file (no DICOM preamble and no image tags)', which says nothing of what it is or what to
    do. The reason now names the format and asks for one .nii.gz with its orientation; the .nii.gz beside them is
    imported."""
    import shutil

    import nibabel as nib
    import SimpleITK as sitk

    src = nib.load(realct["example_ct_sm"])
    data = np.asanyarray(src.dataobj)
    root = tmp_path / "import"
    root.mkdir()
    nib.save(nib.Nifti1Pair(data, src.affine), root / "pair.hdr")
    nib.save(nib.AnalyzeImage(data, src.affine), root / "analyze.hdr")
    sitk.WriteImage(sitk.ReadImage(str(realct["example_ct_sm"])), str(root / "meta.mha"))
    shutil.copy(realct["example_ct_sm"], root / "ct.nii.gz")
    report = import_path(Dataset.objects.create(name="formats"), root)
    assert report.counts() == {"imported": 1, "skipped": 5, "failed": 0}
    reasons = {i.path: i.reason for i in report.items.filter(status="skipped")}
    assert sorted(reasons) == ["analyze.hdr", "analyze.img", "meta.mha", "pair.hdr", "pair.img"]
    assert reasons["pair.img"].startswith("a volume in another format (Analyze or NIfTI header/image pair (.hdr/.img)): "
                                          "only DICOM and single-file NIfTI (.nii, .nii.gz) are imported")
    assert reasons["meta.mha"].startswith("a volume in another format (MetaImage (.mha/.mhd)): only DICOM")
    assert all("save it as one .nii.gz with its orientation" in r for r in reasons.values())


@pytest.mark.django_db
def test_a_zip_given_to_a_folder_import_says_it_is_a_zip(tmp_path):
    """import_studies (or the API's server path) on the same zip of a DICOM series the upload page takes, or a
    zip inside an imported folder, was skipped as "not a DICOM file (no DICOM preamble and no image tags)". It now
    says it is a zip archive and how to import it; the user's zip is left where it is."""
    import zipfile

    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("study/IM0001", b"\x00" * 200)
    dataset = Dataset.objects.create(name="zips")
    report = import_path(dataset, archive)
    reasons = [i.reason for i in report.items.all()]
    assert len(reasons) == 1 and reasons[0].startswith("a zip archive, not a DICOM file: unzip it"), reasons
    assert archive.exists()
