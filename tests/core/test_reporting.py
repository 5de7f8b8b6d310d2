"""The DICOM objects that carry a verdict back to the PACS, built from the real TotalSegmentator CT written as
DICOM: the TID 1500 SR passes dciodvfy and reads back with highdicom (verdict, numbers, the crop boxes as
SCOORD3D in the source frame of reference, model, research-tool statement); key images sample the volume on a
patient-aligned grid and draw the boxes where they are; the Secondary Captures pass dciodvfy."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from inference.ml.acquisition import acquisition_cautions
from inference.ml.geometry import lps_to_voxel, voxel_to_lps, volume_extent
from inference.ml.proposals import propose
from inference.ml.reporting import (
    Findings,
    ModelInfo,
    SideFinding,
    SourceImage,
    SourceSeries,
    build_key_image,
    build_report,
    read_report,
    render_axial,
)
from inference.ml.reporting.findings import RESEARCH_STATEMENT
from inference.ml.reporting.key_images import key_slices, resample_axial
from inference.ml.volume import load_nifti
from tests.plugins.pacs import dciodvfy, write_real_ct_study

MODEL = ModelInfo("adrenal-2.5d fast run 7", "3", {"backbone": "resnet18", "objective": "accuracy"})


@pytest.fixture(scope="module")
def real(realct, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reporting")
    study = write_real_ct_study(folder, realct)
    volume = load_nifti(realct["example_ct"])
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in study["abdomen"][1]]
    source = SourceSeries(headers[0], tuple(SourceImage(h.SOPClassUID, h.SOPInstanceUID,
                                                        tuple(float(v) for v in h.ImagePositionPatient))
                                            for h in headers))
    proposal = propose(volume)
    assert proposal.status == "proposed", proposal.reason
    return {"volume": volume, "source": source, "boxes": proposal.boxes, "folder": folder}


def abnormal_findings(boxes) -> Findings:
    zs = np.arange(boxes["R"].lps_min[2] + 3, boxes["R"].lps_max[2] - 3, 3.0)
    scores = tuple((float(z), 0.9 if n % 2 else 0.3) for n, z in enumerate(zs))
    return Findings("abnormal", "", 0.61, 0.5, 0.4,
                    {"R": SideFinding("R", 0.55, True, boxes["R"]), "L": SideFinding("L", 0.1, False, boxes["L"])},
                    tuple(z for z, p in scores if p >= 0.5), scores, MODEL)


def _save(ds, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_sr_passes_dciodvfy_and_reads_back_with_highdicom(real):
    source, boxes = real["source"], real["boxes"]
    findings = abnormal_findings(boxes)
    sr = build_report(source, findings, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                      device_uid=generate_uid())
    path = _save(sr, real["folder"] / "sr.dcm")
    errors, output = dciodvfy(path)
    assert not errors, output
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.StudyInstanceUID == source.study_uid and ds.PatientID == source.header.PatientID
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.series_uid
    assert len(evidence.ReferencedSOPSequence) == len(source.images)
    report = read_report(ds)
    assert report["verdict"] == "abnormal"
    assert (report["fraction"], report["operating_value"], report["probability"]) == (0.5, 0.4, 0.61)
    assert report["model"] == {"name": MODEL.name, "version": "3"}
    assert RESEARCH_STATEMENT in report["texts"] and "side(s) pointed to: right" in report["texts"][0]
    for side in ("R", "L"):
        got = report["sides"][side]
        assert got["finding"] == ("abnormal" if side == "R" else "normal")
        assert got["frame_of_reference_uid"] == source.frame_of_reference_uid
        assert got["series_uid"] == source.series_uid
        corners = np.concatenate(got["polygons"])
        assert corners.min(axis=0) == pytest.approx(boxes[side].lps_min)
        assert corners.max(axis=0) == pytest.approx(boxes[side].lps_max)
        assert [p[0, 2] for p in got["polygons"]] == pytest.approx([boxes[side].lps_min[2], boxes[side].lps_max[2]])


def test_sr_and_key_images_carry_the_cautions(real):
    """A verdict on a scan outside the model's validated acquisition range says so in the SR (one comment per
    caution, read back) and on the key images (a caution line), where a radiologist reads it in the PACS."""
    source, boxes, volume = real["source"], real["boxes"], real["volume"]
    caution = acquisition_cautions((3.0, 3.0, 3.0), {"pixel_mm": [0.7, 0.9], "slice_mm": [1.0, 1.5], "scans": 20})
    assert caution
    findings = dataclasses.replace(abnormal_findings(boxes), cautions=tuple(caution))
    path = _save(build_report(source, findings, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                              device_uid=generate_uid()), real["folder"] / "sr_caution.dcm")
    errors, output = dciodvfy(path)
    assert not errors, output
    report = read_report(pydicom.dcmread(path))
    assert report["cautions"] == list(caution) and report["verdict"] == "abnormal"
    plain = build_report(source, abnormal_findings(boxes), sop_instance_uid=generate_uid(),
                         series_instance_uid=generate_uid(), device_uid=generate_uid())
    assert read_report(plain)["cautions"] == []
    z = key_slices(findings, 1)[0]
    orange = [(_orange(render_axial(volume, z, f).rgb)) for f in (findings, abnormal_findings(boxes))]
    assert orange[0] > 200 and orange[1] == 0  # the caution line is drawn only with cautions


def _orange(rgb: np.ndarray) -> int:
    rgb = rgb.astype(int)
    return int(((rgb[..., 0] > 230) & (abs(rgb[..., 1] - 160) < 30) & (rgb[..., 2] < 60)).sum())


def test_a_per_gland_verdict_reports_the_score_its_operating_value_applies_to(real):
    findings = dataclasses.replace(abnormal_findings(real["boxes"]), score=0.42)
    assert "scan score 0.42 (operating value 0.40)" in findings.summary() and "fraction" not in findings.summary()
    report = read_report(build_report(real["source"], findings, sop_instance_uid=generate_uid(),
                                      series_instance_uid=generate_uid(), device_uid=generate_uid()))
    assert report["score"] == pytest.approx(0.42) and report["fraction"] == 0.5
    assert "scan score 0.42" in report["texts"][0]
    # its probability is the calibrated scan score (the verdict page's), not a mean over images as it was labelled
    assert "calibrated probability 0.61" in report["texts"][0] and "mean probability" not in report["texts"][0]
    assert report["probability"] == 0.61
    path = _save(build_report(real["source"], findings, sop_instance_uid=generate_uid(),
                              series_instance_uid=generate_uid(), device_uid=generate_uid()), real["folder"] / "gl.dcm")
    errors, output = dciodvfy(path)
    assert not errors, output
    assert "mean probability 0.61" in abnormal_findings(real["boxes"]).summary()
    # the key images' headline too: it compared the image vote (0.50) with the operating value, so a per-gland
    # verdict read "ABNORMAL (fraction 0.20, operating value 0.40)" where 0.20 was never the number judged
    assert findings.title() == "Adrenal CT AI: ABNORMAL (scan score 0.42, operating value 0.40)"
    assert abnormal_findings(real["boxes"]).title() == "Adrenal CT AI: ABNORMAL (fraction 0.50, operating value 0.40)"


def test_not_assessable_sr_says_why_without_boxes(real):
    findings = Findings("not_assessable", "adrenal region not covered (no lung bases)", None, None, 0.4, {}, (), (),
                        MODEL)
    path = _save(build_report(real["source"], findings, sop_instance_uid=generate_uid(),
                              series_instance_uid=generate_uid(), device_uid=generate_uid()),
                 real["folder"] / "sr_na.dcm")
    errors, output = dciodvfy(path)
    assert not errors, output
    report = read_report(pydicom.dcmread(path))
    assert report["verdict"] == "not_assessable" and report["sides"] == {}
    assert "Reason: adrenal region not covered (no lung bases)" in report["texts"]
    assert "probability" not in report and report["operating_value"] == 0.4
    with pytest.raises(ValueError, match="not one of"):
        Findings("maybe", "", None, None, None, {}, (), (), MODEL)


def test_key_image_samples_the_volume_in_patient_orientation_and_draws_the_boxes(real):
    volume, boxes = real["volume"], real["boxes"]
    findings = abnormal_findings(boxes)
    z = key_slices(findings, 1)[0]
    k = int(round(lps_to_voxel(volume.affine, [0, 0, z])[2]))
    z = float(voxel_to_lps(volume.affine, [0, 0, k])[2])  # a slice centre: the grid corners are voxel centres
    hu, x0, y0, spacing = resample_axial(volume, z)
    ext = volume_extent(volume.affine, volume.shape)
    assert (x0, y0) == pytest.approx(ext.lps_min[:2]) and max(hu.shape) >= 512
    for row, col in ((0, 0), (hu.shape[0] - 1, 0), (0, hu.shape[1] - 1)):
        i, j, _ = np.rint(lps_to_voxel(volume.affine, [x0 + col * spacing, y0 + row * spacing, z])).astype(int)
        assert hu[row, col] == pytest.approx(volume.array[k, j, i], abs=1)
    image = render_axial(volume, z, findings, title="Adrenal CT AI: ABNORMAL")
    rgb = image.rgb.astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)
    green = (rgb[..., 1] > 180) & (rgb[..., 0] < 120)
    for side, mask in (("R", red), ("L", green)):
        b = boxes[side]
        c0, c1 = [(x - x0) / spacing for x in (b.lps_min[0], b.lps_max[0])]
        r0, r1 = [(y - y0) / spacing for y in (b.lps_min[1], b.lps_max[1])]
        mid_r, mid_c = int((r0 + r1) / 2), int((c0 + c1) / 2)
        assert mask[mid_r, int(round(c0)) - 1:int(round(c0)) + 2].any()  # its left edge
        assert mask[int(round(r1)) - 1:int(round(r1)) + 2, mid_c].any()  # its posterior edge
        assert not mask[mid_r, mid_c]  # the inside is the image
    # the patient's right box is on the image's left
    assert np.nonzero(red)[1].mean() < np.nonzero(green)[1].mean()


def test_secondary_capture_passes_dciodvfy_and_references_its_slice(real):
    volume, source, boxes = real["volume"], real["source"], real["boxes"]
    findings = abnormal_findings(boxes)
    z = key_slices(findings, 1)[0]
    image = render_axial(volume, z, findings)
    sc = build_key_image(source, image, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                         instance_number=1)
    path = _save(sc, real["folder"] / "sc.dcm")
    errors, output = dciodvfy(path)
    assert not errors, output
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (*image.rgb.shape[:2], 3)
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([image.spacing_mm] * 2, abs=1e-5)
    assert ds.PatientOrientation == ["L", "P"] and ds.BurnedInAnnotation == "YES"
    assert ds.StudyInstanceUID == source.study_uid and ds.PatientName == source.header.PatientName
    nearest = source.nearest(z)
    assert abs(nearest.position[2] - z) <= 1.5
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == nearest.sop_instance_uid
    assert np.array_equal(ds.pixel_array, image.rgb)
    assert key_slices(findings, 3) == sorted(key_slices(findings, 3), reverse=True) and len(key_slices(findings, 3)) == 3


@pytest.mark.parametrize("charset, name", [
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),  # Japanese with code extensions
    (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞"),  # Korean, which highdicom's list lacks
    ("GB18030", "王^小明"),
    ("ISO-IR 100", "Muller^Zoe"),  # misspelt
])
def test_results_for_a_study_in_any_character_set_are_written_in_utf8(real, tmp_path, charset, name):
    """The source's SpecificCharacterSet went into the SR and key images as it was: highdicom refused the code
    extensions' empty first value and misspellings (ValueError), so a Japanese study never got its answer. The
    results carry the same names in UTF-8 and pass dciodvfy."""
    import io

    header = pydicom.Dataset()
    header.update(real["source"].header)
    header.SpecificCharacterSet = charset
    header.PatientName = name
    buffer = io.BytesIO()
    header.save_as(buffer, implicit_vr=False, little_endian=True)  # as the PACS encodes it, read back
    buffer.seek(0)
    encoded = pydicom.dcmread(buffer, force=True)
    source = SourceSeries(encoded, real["source"].images)
    findings = abnormal_findings(real["boxes"])
    sr = build_report(source, findings, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                      device_uid=generate_uid())
    image = render_axial(real["volume"], key_slices(findings, 1)[0], findings)
    sc = build_key_image(source, image, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                         instance_number=1)
    for ds, stem in ((sr, "sr"), (sc, "sc")):
        path = _save(ds, tmp_path / f"{stem}.dcm")
        errors, output = dciodvfy(path)
        assert not errors, output
        back = pydicom.dcmread(path)
        assert back.SpecificCharacterSet == "ISO_IR 192" and str(back.PatientName) == name


def _valid_results(real, source: SourceSeries, tmp_path) -> list[tuple[pydicom.Dataset, Path]]:
    """The SR and one key image of ``source`` for abnormal findings, saved under ``tmp_path``, each passing
    dciodvfy: ``[(sr, path), (key image, path)]``."""
    findings = abnormal_findings(real["boxes"])
    sr = build_report(source, findings, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                      device_uid=generate_uid())
    sc = build_key_image(source, render_axial(real["volume"], key_slices(findings, 1)[0], findings),
                         sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(), instance_number=1)
    saved = []
    for ds, stem in ((sr, "sr"), (sc, "sc")):
        path = _save(ds, tmp_path / f"{stem}.dcm")
        errors, output = dciodvfy(path)
        assert not errors, output
        saved.append((ds, path))
    return saved


def test_results_for_a_source_without_type2_patient_and_study_attributes(real, tmp_path):
    """A CT that leaves out AccessionNumber, StudyID, PatientID... (Type 2, often simply absent: research exports,
    modalities without a worklist) made highdicom fail with AttributeError, so the study never got its SR (the
    answer job's error: "'Dataset' object has no attribute 'AccessionNumber'"). They are now written empty, as
    the standard asks when unknown, and both results pass dciodvfy in the source's study."""
    from inference.ml.reporting.findings import TYPE2_KEYWORDS

    header = pydicom.Dataset()
    header.update(real["source"].header)
    for keyword in TYPE2_KEYWORDS:
        delattr(header, keyword)
    results = _valid_results(real, SourceSeries(header, real["source"].images), tmp_path)
    for _, path in results:
        back = pydicom.dcmread(path)
        assert back.StudyInstanceUID == real["source"].study_uid and back.AccessionNumber == "" and back.PatientID == ""
    assert read_report(results[0][0])["verdict"] == "abnormal"
    assert "AccessionNumber" not in header  # the caller's header is not changed


@pytest.mark.parametrize("keyword, value, written", [
    ("StudyDate", "2024-01-17", "20240117"), ("StudyDate", "abc", ""), ("PatientBirthDate", "19581302", ""),
    ("StudyTime", "10:15:00", "101500"), ("StudyTime", "25:00", ""), ("PatientSex", "FEMALE", "F"),
    ("PatientSex", "U", ""), ("PatientSex", "f", "F"),
])
def test_results_for_a_source_with_a_non_conformant_date_time_or_sex(real, tmp_path, keyword, value, written):
    """A source whose StudyDate was written '2024-01-17', whose time was '25:00' or whose sex was 'U' or 'FEMALE'
    (all seen from real modalities, which PACSes store) made highdicom refuse to build the SR and the key images
    (ValueError: "Unable to convert '2024-01-17' to 'DA' object", "'U' is not a valid PatientSexValues"): the study
    never got an answer. Such values are now written conformant, or empty when they say nothing."""
    import io

    header = pydicom.Dataset()
    header.update(real["source"].header)
    setattr(header, keyword, value)
    buffer = io.BytesIO()
    header.save_as(buffer, implicit_vr=False, little_endian=True)  # as the PACS sends it, read back
    buffer.seek(0)
    for _, path in _valid_results(real, SourceSeries(pydicom.dcmread(buffer, force=True), real["source"].images),
                                  tmp_path):
        assert str(pydicom.dcmread(path).get(keyword, "")) == written


@pytest.mark.parametrize("raw, written", [(b"1,75", "1.75"), (b"abc ", None)])
def test_results_for_a_source_with_a_weight_or_size_that_is_no_dicom_number(real, tmp_path, raw, written):
    """PatientSize '1,75' (a decimal comma, as European modalities write it) or a weight 'abc' made the SR's
    evidence copy fail (ValueError: could not convert string to float), so the study got no SR. The number is
    now read with its comma, and a value that is none left out (Type 3)."""
    import io

    header = pydicom.Dataset()
    header.update(real["source"].header)
    header.PatientSize = "9.99"
    buffer = io.BytesIO()
    header.save_as(buffer, implicit_vr=False, little_endian=True)
    data = buffer.getvalue()
    assert data.count(b"9.99") == 1
    source = SourceSeries(pydicom.dcmread(io.BytesIO(data.replace(b"9.99", raw)), force=True), real["source"].images)
    sr = build_report(source, abnormal_findings(real["boxes"]), sop_instance_uid=generate_uid(),
                      series_instance_uid=generate_uid(), device_uid=generate_uid())
    path = _save(sr, tmp_path / "sr.dcm")
    errors, output = dciodvfy(path)
    assert not errors, output
    back = pydicom.dcmread(path)
    assert (str(back.PatientSize) if "PatientSize" in back else None) == written
