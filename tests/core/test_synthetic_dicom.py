"""Synthetic cohort on disk: raw layout, ground_truth.csv, DICOM validity and variety, reproducibility,
and agreement of pydicom, SimpleITK and dcm2niix on a generated series."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import UID

from inference.ml.geometry import affine_from_dicom, volume_extent
from synthetic import make_cohort, make_patient, read_ground_truth
from synthetic.preview import canonical
from inference.ml.volume import Volume, load_nifti


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def test_raw_layout_and_ground_truth(synthetic_cohort):
    out, rows = synthetic_cohort["path"], synthetic_cohort["rows"]
    assert read_ground_truth(synthetic_cohort["csv"]) == rows
    patients = {r.patient: r.label for r in rows}
    assert len(patients) == 6 and sum(v == "abnormal" for v in patients.values()) == 3
    for r in rows:
        folder = out / r.series_path
        parts = Path(r.series_path).parts
        assert parts[0] == r.label and parts[1] == r.patient and parts[2] == "DICOM" and len(parts) == 7
        assert folder.is_dir() and _files(folder)
        if r.kind == "localizer":
            assert len(_files(folder)) == 2 and r.glands == {"R": None, "L": None}
            continue
        assert all(r.glands.values())  # the tiny profile always covers both glands
        assert (len(r.lesions) > 0) == (r.label == "abnormal")
        ext = volume_extent(read_series_pydicom(folder).affine, (int(r.extra["slices"]), 256, 256))
        for box in [*r.glands.values(), *[x.box for x in r.lesions]]:
            assert np.all(np.asarray(box.lps_min) >= np.asarray(ext.lps_min) - 1e-3)
            assert np.all(np.asarray(box.lps_max) <= np.asarray(ext.lps_max) + 1e-3)
    kinds = {r.kind for r in rows}
    assert {"axial", "thick", "localizer"} <= kinds
    assert {r.extra["rescale"] for r in rows} == {"signed", "unsigned"}
    assert sorted(p.name for p in (out / "preview").iterdir()) == [f"SYN{n:04d}.png" for n in range(1, 7)]


def test_dicom_files_are_valid_ct_images_with_varied_conventions(synthetic_cohort):
    out, rows = synthetic_cohort["path"], synthetic_cohort["rows"]
    seen_intercepts, unordered = set(), 0
    for r in rows:
        dss = [pydicom.dcmread(p) for p in _files(out / r.series_path)]
        for ds in dss:
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" == ds.file_meta.MediaStorageSOPClassUID
            for tag in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
                assert UID(getattr(ds, tag)).is_valid, tag
            assert ds.StudyInstanceUID == r.study_uid and ds.SeriesInstanceUID == r.series_uid
            assert ds.PatientName == r.patient and ds.Modality == "CT" and ds.BodyPartExamined
            assert ds.RescaleSlope == 1 and ds.WindowWidth == 400
            assert (ds.PixelRepresentation, ds.RescaleIntercept) in ((1, 0), (0, -1024))
            seen_intercepts.add(float(ds.RescaleIntercept))
            assert ("LOCALIZER" in ds.ImageType) == (r.kind == "localizer")
        if r.kind == "localizer":
            assert [float(v) for v in dss[0].ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
            continue
        assert len({ds.SOPInstanceUID for ds in dss}) == len(dss)
        z = [float(ds.ImagePositionPatient[2]) for ds in dss]
        steps = np.diff(sorted(z))
        assert np.allclose(steps, float(r.extra["slice_spacing_mm"]), atol=1e-3)
        assert all(abs(float(ds.SliceThickness) - steps[0]) < 1e-3 for ds in dss)
        inst = [int(ds.InstanceNumber) for ds in dss]  # in file-name order
        assert sorted(inst) == list(range(1, len(dss) + 1))
        unordered += inst != sorted(inst) and inst != sorted(inst, reverse=True)
    assert seen_intercepts == {0.0, -1024.0}
    assert unordered >= 3


def test_same_seed_gives_identical_files(tmp_path):
    trees = []
    for name in ("a", "b"):
        make_cohort(tmp_path / name, 2, 0.5, 5, profile="tiny", workers=1)
        trees.append({p.relative_to(tmp_path / name).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                      for p in sorted((tmp_path / name).rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] and len(trees[0]) > 20
    make_cohort(tmp_path / "c", 2, 0.5, 6, profile="tiny", workers=1)
    other = {p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*") if p.is_file()}
    assert other != set(trees[0])


def _sitk_volume(folder: Path) -> Volume:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())[None, :]
    aff[:3, 3] = img.GetOrigin()
    return Volume(sitk.GetArrayFromImage(img).astype(np.int16), aff)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="Debian's dcm2niix is not installed")
@pytest.mark.parametrize("signed", [True, False])
def test_pydicom_simpleitk_and_dcm2niix_read_the_same_volume(tmp_path, signed):
    for seed in range(21, 41):  # the first one-patient cohort whose series uses the wanted rescale convention
        rows = make_cohort(tmp_path / f"c{seed}", 1, 1.0, seed, profile="tiny", workers=1)
        row = next(r for r in rows if r.kind == "axial")
        if (row.extra["rescale"] == "signed") == signed:
            break
    else:
        pytest.fail("no cohort with that rescale convention")
    folder = tmp_path / f"c{seed}" / row.series_path
    truth = make_patient(seed * 1000 + 1, abnormal=True, profile="tiny").volume  # what was written
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "out", "-o", str(tmp_path), str(folder)], check=True,
                   capture_output=True)
    readers = {"pydicom": read_series_pydicom(folder), "simpleitk": _sitk_volume(folder),
               "dcm2niix": load_nifti(tmp_path / "out.nii")}
    ref = canonical(truth)
    for name, vol in readers.items():
        c = canonical(vol)
        assert c.shape == ref.shape, name
        assert np.allclose(c.affine, ref.affine, atol=1e-3), name
        assert np.array_equal(c.array, ref.array), name


def test_make_demo_data_command_and_bad_input(tmp_path):
    from django.core.management import CommandError, call_command

    call_command("make_demo_data", str(tmp_path / "d"), "--patients", "2", "--abnormal-fraction", "0.5", "--seed", "3",
                 "--profile", "tiny", "--preview", "--workers", "1")
    rows = read_ground_truth(tmp_path / "d" / "ground_truth.csv")
    assert {r.patient for r in rows} == {"SYN0001", "SYN0002"}
    assert len(list((tmp_path / "d" / "preview").glob("*.png"))) == 2
    with pytest.raises(CommandError, match="abnormal_fraction"):
        call_command("make_demo_data", str(tmp_path / "e"), "--patients", "2", "--abnormal-fraction", "1.5")
    with pytest.raises(ValueError, match="patients must be at least 1"):
        make_cohort(tmp_path / "f", 0, 0.5, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a ground-truth CSV"):
        read_ground_truth(bad)


def test_lesions_in_the_real_example_ct(tmp_path, realct):
    from scipy import ndimage

    from synthetic.real_base import make_real_patient

    for seed in range(3):
        s = make_real_patient(seed, abnormal=True, fixtures_dir=realct["seg_dir"], lesion={"diameter_mm": 20})
        assert s.truth.lesions
        for les in s.truth.lesions:
            lm = s.masks[f"lesion_{les.side}"]
            gm = s.masks[f"gland_{les.side}"]
            assert (ndimage.binary_dilation(lm, structure=np.ones((3, 3, 3))) & gm).any()
            assert s.truth.glands[les.side].contains(les.box.centre)
    rows = make_cohort(tmp_path / "r", 2, 0.5, 4, base="real", workers=1,
                       real_fixtures_dir=realct["seg_dir"])
    assert {r.extra["base"] for r in rows} == {"real"}
    assert {r.label for r in rows} == {"normal", "abnormal"}
    axial = [r for r in rows if r.kind == "axial"]
    vol = read_series_pydicom(tmp_path / "r" / axial[0].series_path)
    assert vol.shape == load_nifti(realct["example_ct_sm"]).shape


def test_lesions_in_the_second_real_patient(realct):
    """The example DICOM series' patient (the detector's pretraining may use it): its mask, stored with its rows
    flipped against the series, lands on the gland (soft tissue in fat at 1 mm, the aorta enhanced beside it in
    the portal venous copies); a lesion grows from the right gland; copies differ in phase and voxel size."""
    from scipy import ndimage

    from synthetic.real_base import make_dicom_patient

    seen = set()
    for seed in range(8):
        s = make_dicom_patient(seed, abnormal=seed % 2 == 0, fixtures_dir=realct["seg_dir"],
                               lesion={"diameter_mm": 20} if seed % 2 == 0 else None)
        seen.add((s.acquisition.phase, round(float(s.volume.spacing[0]), 2), round(float(s.volume.spacing[2]), 2)))
        gm = s.masks["gland_R"]
        assert gm.any() and "gland_L" not in s.masks and s.truth.glands["L"] is None
        if s.volume.spacing[0] < 1 and not s.truth.lesions:
            hu = s.volume.array[gm]
            assert -60 < np.median(hu) < 110, np.median(hu)   # the gland, not the fat or air a flipped mask hits
        for les in s.truth.lesions:
            assert les.side == "R"
            lm = s.masks["lesion_R"]
            assert (ndimage.binary_dilation(lm, structure=np.ones((3, 3, 3))) & gm).any()
            assert s.truth.glands["R"].contains(les.box.centre)
    assert len({p for p, _, _ in seen}) == 2 and len(seen) >= 3
    with pytest.raises(ValueError, match="right adrenal only"):
        make_dicom_patient(0, abnormal=True, fixtures_dir=realct["seg_dir"], lesion={"side": "L"})


def read_series_pydicom(folder: Path) -> Volume:
    """A reference reader: sort by position along the slice normal, apply rescale."""
    dss = [pydicom.dcmread(p) for p in sorted(Path(folder).iterdir()) if p.is_file()]
    iop = np.asarray(dss[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))
    arr = np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    p0, p1 = np.asarray(dss[0].ImagePositionPatient, float), np.asarray(dss[1].ImagePositionPatient, float)
    aff = affine_from_dicom(p0, iop, [float(v) for v in dss[0].PixelSpacing], p1 - p0)
    return Volume(np.rint(arr).astype(np.int16), aff)
