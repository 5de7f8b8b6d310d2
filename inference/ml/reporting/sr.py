"""The verdict as a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom), filed in the
source study.

Content (codes: SNOMED CT and DCM where they exist, private scheme ``99ADRCT`` otherwise):

- observation context: the device (name, model and version of the classifier);
- measurement group "scan verdict" (TID 1501) on the adrenal glands: qualitative evaluation *Adrenal lesion
  verdict* = Abnormal / Normal (SNOMED CT) / Not assessable, measurements *scan score* (per-gland models: what the
  operating value applies to), *fraction of images voted abnormal*, *operating value*, *mean image probability* (per-gland models:
  *calibrated probability*, what their verdict pages show),
  and the algorithm identification (model name, version, parameters);
- one measurement group per side with a crop box (TID 1411, finding site adrenal gland + laterality): the box
  as an SCOORD3D volume surface (its lowest and highest axial rectangles, in the source series' frame of
  reference, referencing the source series), the side score and its verdict by the same rule;
- a "Qualitative Evaluations" container with TEXT items: the summary line, the reason when not assessable,
  one "Caution: ..." comment per caution (the scan lies outside what the model was validated on), and the
  research-tool statement.

``read_report(dataset)`` reads those back (for tests and for anyone checking an SR).
"""
from __future__ import annotations

import uuid

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .findings import RESEARCH_STATEMENT, Findings, SourceSeries
from .key_images import box_polygons

SCHEME = "99ADRCT"
FRACTION = Code("FRAC", SCHEME, "Fraction of 2.5D images voted abnormal")
OPERATING_VALUE = Code("OPV", SCHEME, "Operating value")
PROBABILITY = Code("PROB", SCHEME, "Mean image probability of an adrenal lesion")
CALIBRATED_PROBABILITY = Code("CALPROB", SCHEME, "Calibrated probability of an adrenal lesion")
SIDE_SCORE = Code("SIDE", SCHEME, "Side score (the gland's own score)")
SCAN_SCORE = Code("SCORE", SCHEME, "Scan score (max over the glands of their top-k mean)")
NOT_ASSESSABLE = Code("NA", SCHEME, "Not assessable")
VERDICT = Code("VERDICT", SCHEME, "Adrenal lesion verdict")
SIDE_VERDICT = Code("SIDEVERDICT", SCHEME, "Adrenal lesion verdict of this side")
VERDICT_CODES = {"abnormal": codes.SCT.Abnormal, "normal": codes.SCT.Normal, "not_assessable": NOT_ASSESSABLE}
LATERALITY = {"R": codes.SCT.Right, "L": codes.SCT.Left}
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
SUMMARY = codes.DCM.Conclusion
COMMENT = codes.DCM.Comment
SERIES_DESCRIPTION = "Adrenal CT AI result (research tool, not for diagnosis)"
CAUTION_PREFIX = "Caution: "


def _verdict_code(verdict: str) -> Code:
    return VERDICT_CODES[verdict]


def _algorithm(findings: Findings) -> hd.sr.AlgorithmIdentification:
    params = [f"{k}={v}" for k, v in sorted(findings.model.parameters.items())]
    return hd.sr.AlgorithmIdentification(name=findings.model.name[:64], version=findings.model.version[:64],
                                         parameters=params or None)


def _number(name: Code, value: float, algorithm) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=codes.UCUM.NoUnits, algorithm_id=algorithm)


def _scan_group(findings: Findings, source: SourceSeries, algorithm) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = []
    if findings.score is not None:
        measurements.append(_number(SCAN_SCORE, findings.score, algorithm))
    if findings.fraction is not None:
        measurements.append(_number(FRACTION, findings.fraction, algorithm))
    if findings.operating_value is not None:
        measurements.append(_number(OPERATING_VALUE, findings.operating_value, algorithm))
    if findings.probability is not None:  # per-gland models report the calibrated scan score, not an image mean
        name = CALIBRATED_PROBABILITY if findings.score is not None else PROBABILITY
        measurements.append(_number(name, findings.probability, algorithm))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID.from_uuid(str(_uuid(source.series_uid, "scan"))), identifier="scan verdict"),
        finding_type=codes.SCT.Lesion,
        finding_sites=[hd.sr.FindingSite(codes.SCT.AdrenalGland, laterality=codes.SCT.RightAndLeft)],
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(VERDICT, _verdict_code(findings.verdict))],
    )


def _side_groups(findings: Findings, source: SourceSeries, algorithm) -> list:
    groups = []
    frame = source.frame_of_reference_uid
    for side in findings.sides.values():
        if side.box is None or not frame:
            continue
        surface = hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POLYGON, graphic_data=box_polygons(side.box),
            frame_of_reference_uid=frame,
            source_series=hd.sr.SourceSeriesForSegmentation(source.series_uid),
        )
        evaluations = None
        if side.abnormal is not None:
            evaluations = [hd.sr.QualitativeEvaluation(SIDE_VERDICT,
                                                       codes.SCT.Abnormal if side.abnormal else codes.SCT.Normal)]
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID.from_uuid(str(_uuid(source.series_uid, side.side))),
                identifier=f"{side.name} adrenal crop box"),
            referenced_volume_surface=surface,
            finding_type=codes.SCT.AdrenalGland,
            finding_sites=[hd.sr.FindingSite(codes.SCT.AdrenalGland, laterality=LATERALITY[side.side])],
            algorithm_id=algorithm,
            measurements=[_number(SIDE_SCORE, side.score, algorithm)] if side.score is not None else None,
            qualitative_evaluations=evaluations,
        ))
    return groups


def _texts(findings: Findings) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS,
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    items = [hd.sr.TextContentItem(name=SUMMARY, value=findings.summary()[:1024],
                                   relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)]
    if findings.reason:
        items.append(hd.sr.TextContentItem(name=COMMENT, value=f"Reason: {findings.reason}"[:1024],
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    for caution in findings.cautions:
        items.append(hd.sr.TextContentItem(name=COMMENT, value=f"{CAUTION_PREFIX}{caution}"[:1024],
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    items.append(hd.sr.TextContentItem(name=COMMENT, value=RESEARCH_STATEMENT,
                                       relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _uuid(*parts: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_OID, "/".join(parts))


def build_report(source: SourceSeries, findings: Findings, *, sop_instance_uid: str, series_instance_uid: str,
                 device_uid: str, manufacturer: str = "adrenal-ct", series_number: int = 9901,
                 instance_number: int = 1) -> Dataset:
    """A Comprehensive 3D SR (TID 1500) of ``findings`` on ``source``, in the source's study (patient and study
    attributes copied from its header). UIDs are the caller's (derive them deterministically to make a rebuild
    the same object). Raises ValueError from highdicom when the source headers lack required attributes."""
    algorithm = _algorithm(findings)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid, name="Adrenal CT AI node", manufacturer_name=manufacturer,
            model_name=f"{findings.model.name} v{findings.model.version}"[:64]),
    )
    groups = [_scan_group(findings, source, algorithm), *_side_groups(findings, source, algorithm)]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.cid100.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    report[0].ContentSequence.append(_texts(findings))
    sr = hd.sr.Comprehensive3DSR(
        evidence=source.evidence(), content=report[0], series_instance_uid=series_instance_uid,
        series_number=series_number, sop_instance_uid=sop_instance_uid, instance_number=instance_number,
        manufacturer=manufacturer, is_complete=True, is_final=False, is_verified=False,
        series_description=SERIES_DESCRIPTION,
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "Adrenal CT AI node codes"
    scheme.CodingSchemeResponsibleOrganization = "adrenal-lesions project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def read_report(dataset: Dataset) -> dict:
    """What an SR made by ``build_report`` says, read back with highdicom: ``{"verdict", "fraction",
    "operating_value", "probability", "score" (per-gland models), "model": {"name", "version"}, "texts": [...],
    "cautions": [...] (the "Caution: " comments without that prefix), "sides": {"R": {"score", "finding", "polygons" ([N, 3] LPS mm
    each), "frame_of_reference_uid", "series_uid"}}}``. Raises ValueError (or highdicom's errors) when it is not a
    TID 1500 report."""
    sr = hd.sr.Comprehensive3DSR.from_dataset(dataset, copy=True)
    report = hd.sr.MeasurementReport.from_sequence([sr], copy=True)
    out: dict = {"sides": {}, "texts": []}
    for group in report.get_image_measurement_groups():
        for ev in group.get_qualitative_evaluations():
            out["verdict"] = _verdict_of_code(ev.value)
        for m in group.get_measurements():
            key = {FRACTION.value: "fraction", OPERATING_VALUE.value: "operating_value",
                   PROBABILITY.value: "probability", CALIBRATED_PROBABILITY.value: "probability",
                   SCAN_SCORE.value: "score"}.get(m.name.value)
            if key:
                out[key] = float(m.value)
    names = hd.sr.utils.find_content_items(sr, name=codes.DCM.AlgorithmName, recursive=True)
    versions = hd.sr.utils.find_content_items(sr, name=codes.DCM.AlgorithmVersion, recursive=True)
    if names:
        out["model"] = {"name": str(names[0].TextValue), "version": str(versions[0].TextValue) if versions else ""}
    for group in report.get_volumetric_roi_measurement_groups():
        side = "R" if "right" in str(group.tracking_identifier).lower() else "L"
        entry: dict = {}
        for m in group.get_measurements():
            if m.name.value == SIDE_SCORE.value:
                entry["score"] = float(m.value)
        for ev in group.get_qualitative_evaluations():
            entry["finding"] = _verdict_of_code(ev.value)
        surface = group.roi
        if isinstance(surface, hd.sr.VolumeSurface):
            entry["polygons"] = [np.asarray(p, float) for p in surface.graphic_data]
            entry["frame_of_reference_uid"] = str(surface.frame_of_reference_uid)
            series = surface.source_series_for_segmentation
            entry["series_uid"] = str(series.value) if series is not None else None
        out["sides"][side] = entry
    for item in sr.ContentSequence:
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_EVALUATIONS.value:
            out["texts"] = [str(t.TextValue) for t in item.ContentSequence if t.ValueType == "TEXT"]
    out["cautions"] = [t[len(CAUTION_PREFIX):] for t in out["texts"] if t.startswith(CAUTION_PREFIX)]
    return out


def _verdict_of_code(value) -> str:
    for verdict, code in VERDICT_CODES.items():
        if value.value == code.value and value.scheme_designator == code.scheme_designator:
            return verdict
    return str(value.meaning)
