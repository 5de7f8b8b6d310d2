"""A Prediction as DICOM: its findings (``findings_of``, the one place that reads a Prediction's fields for the
node), the source series it refers to (``source_of``), and its results (``make_results``): one TID 1500 SR and
up to ``ADRENAL_DICOM_KEY_IMAGES`` Secondary Captures of flagged slices, written atomically under
``dicom_results/<prediction>/`` in the shared storage and recorded as ``DicomResult`` rows. UIDs derive from the
prediction and its source series, so making them again gives the same objects."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

from django.conf import settings
from django.db import transaction
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from adrenal_site.storage import discard_stored_on_error, local_path
from annotations.models import Series
from inference.ml.atomic import write_bytes
from inference.ml.geometry import Box
from inference.ml.reporting import (
    Findings,
    ModelInfo,
    SideFinding,
    SourceSeries,
    build_key_image,
    build_report,
    render_axial,
)
from inference.ml.reporting.key_images import key_slices
from inference.ml.verdict import verdict_of
from inference.ml.volume import load_nifti

from ...models import DicomResult, Prediction, TrainingRun
from . import spool
from .received import source_instances

MANUFACTURER = "adrenal-lesions (research)"


class NoSource(LookupError):
    """The scan did not come from DICOM the node kept headers of (received or retrieved), so no result can be
    filed in its study."""


class CannotBuild(ValueError):
    """The kept source header cannot be read, or no SR or key image can be built from it; the message names the
    series and the cause."""


def model_of(run: TrainingRun) -> ModelInfo:
    config = run.config or {}
    name = f"adrenal-2.5d {run.preset} run {run.pk}" + (f" ({run.name})" if run.name else "")
    params = {k: config[k] for k in ("backbone", "preset", "side_px", "slice_mm") if k in config}
    if run.objective:
        params["objective"] = run.objective
    return ModelInfo(name=name[:64], version=str(run.version or run.pk), parameters=params)


def findings_of(prediction: Prediction) -> Findings:
    """What a Prediction says, for the node: the ONE function reading its fields (verdict, reason, probability,
    fraction, operating value, per-side scores, flagged slices, slice scores, cautions) and the series' crop boxes.
    A side is judged with the project's verdict rule (``verdict_of``) on its score."""
    op = prediction.operating_value
    boxes = {b.side: Box(tuple(b.lps_min), tuple(b.lps_max)) for b in prediction.series.boxes.all()}
    sides: dict[str, SideFinding] = {}
    raw_sides = prediction.sides or {}
    details = prediction.side_details or {}  # per-gland runs: each gland's own score and verdict
    for side in ("R", "L"):
        score = details[side].get("score") if side in details else raw_sides.get(side)
        score = float(score) if score is not None else None
        if score is None and side not in boxes:
            continue  # e.g. a side outside the field of view: details say "not assessable" with the note
        if side in details:
            abnormal = {"abnormal": True, "normal": False}.get(details[side].get("verdict"))
        else:
            abnormal = None if score is None or op is None else verdict_of(score, op) == "abnormal"
        if prediction.verdict == Prediction.Verdict.NOT_ASSESSABLE:
            abnormal = None
        sides[side] = SideFinding(side, score, abnormal, boxes.get(side))
    return Findings(
        verdict=str(prediction.verdict), reason=prediction.reason or side_reasons(details), probability=prediction.probability,
        fraction=prediction.fraction, operating_value=op, sides=sides,
        flagged_slices_mm=tuple(float(z) for z in prediction.flagged_slices_mm or ()),
        slice_scores=tuple((float(z), float(p)) for z, p in prediction.slice_scores or ()),
        model=model_of(prediction.run), cautions=tuple(str(c) for c in prediction.cautions or ()),
        score=prediction.score,
    )


def side_reasons(side_details: dict) -> str:
    """The sides a verdict could not judge, for the report's text: ``"L: not assessable: the left adrenal's
    expected place ... is outside the field of view"`` ('' when every side was judged)."""
    return "; ".join(f"{s}: {d['reason']}" for s, d in sorted(side_details.items(), reverse=True)
                     if isinstance(d, dict) and d.get("reason"))


def source_of(series: Series) -> SourceSeries:
    """The kept header and received instances of a series. Raises NoSource when there are none."""
    header = spool.load_header(series.study.study_uid, series.dicom_series_uid)  # a part's too: kept per series
    if header is None:
        raise NoSource(f"series {series.pk} has no DICOM header kept by the node (it was not received or retrieved "
                       f"from a PACS), so no result can be filed in its study")
    return spool.source_series(header, source_instances(series))


def results_name(prediction: Prediction) -> str:
    """Storage name of the prediction's results folder."""
    return f"dicom_results/{prediction.pk}"


def results_dir(prediction: Prediction) -> Path:
    return local_path(results_name(prediction))


def _uid(prediction: Prediction, source: SourceSeries, *parts) -> str:
    return generate_uid(entropy_srcs=["adrenal-node", source.series_uid, str(prediction.pk),
                                      prediction.created_at.isoformat(), *map(str, parts)])


def _bytes(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def existing_results(prediction: Prediction) -> list[DicomResult]:
    """The prediction's results, when all their files are there."""
    results = list(prediction.dicom_results.all())
    if results and all(result_path(r).exists() for r in results):
        return results
    return []


def make_results(prediction: Prediction) -> list[DicomResult]:
    """The prediction's SR and key images (made once; later calls return them). Raises NoSource, or
    CannotBuild (naming the series and the cause) when the kept header cannot be read or a DICOM object cannot
    be built from it."""
    done = existing_results(prediction)
    if done:
        return done
    try:
        return _make_results(prediction)
    except NoSource:
        raise
    except Exception as exc:  # noqa: BLE001 - any source header a PACS accepted: named, never a 500
        raise CannotBuild(f"no DICOM result could be made for series {prediction.series_id} from the header the "
                          f"node kept: {type(exc).__name__}: {str(exc)[:300]}") from exc


def _make_results(prediction: Prediction) -> list[DicomResult]:
    series = prediction.series
    source = source_of(series)
    findings = findings_of(prediction)
    folder = results_dir(prediction)
    made: list[tuple[str, Dataset, str, str]] = []
    sc_series = _uid(prediction, source, "sc-series")
    slices = key_slices(findings, int(settings.ADRENAL_DICOM_KEY_IMAGES))
    if slices and getattr(series, "volume", None) is not None:
        volume = load_nifti(local_path(series.volume.file.name))
        for n, z in enumerate(slices, 1):
            image = render_axial(volume, z, findings, title=findings.title())
            ds = build_key_image(source, image, sop_instance_uid=_uid(prediction, source, "sc", n),
                                 series_instance_uid=sc_series, instance_number=n, manufacturer=MANUFACTURER)
            made.append((DicomResult.Kind.SC, ds, f"sc_{n:02d}.dcm", f"key image at z = {z:.1f} mm"))
    sr = build_report(source, findings, sop_instance_uid=_uid(prediction, source, "sr"),
                      series_instance_uid=_uid(prediction, source, "sr-series"),
                      device_uid=_uid(prediction, source, "device"), manufacturer=MANUFACTURER)
    made.insert(0, (DicomResult.Kind.SR, sr, "sr.dcm", findings.summary()[:200]))
    for _, ds, name, _ in made:
        write_bytes(folder / name, _bytes(ds))
    written = [f"{results_name(prediction)}/{name}" for _, _, name, _ in made]
    # rows that cannot be written (the verdict deleted meanwhile) take the new files with them
    with discard_stored_on_error(*written, unless_used_by=[(DicomResult.objects.all(), "file")]), \
            transaction.atomic():  # same UIDs when made again: rows (and their sends) are kept
        rows = [DicomResult.objects.update_or_create(
            sop_instance_uid=str(ds.SOPInstanceUID),
            defaults={"prediction": prediction, "kind": kind, "sop_class_uid": str(ds.SOPClassUID),
                      "series_uid": str(ds.SeriesInstanceUID), "study_uid": str(ds.StudyInstanceUID),
                      "file": f"{results_name(prediction)}/{name}", "description": text})[0]
            for kind, ds, name, text in made]
    return rows


def result_path(result: DicomResult) -> Path:
    """The local path of a result's file (``result.file`` is a storage name)."""
    return local_path(result.file)

