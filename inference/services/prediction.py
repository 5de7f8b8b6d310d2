"""Verdicts for new studies with a promoted model: boxes, 2.5D images, the fold ensemble, a stored Prediction.

Boxes are the scan's stored ones (confirmed, else proposed) when it has any; otherwise they are proposed
(:func:`inference.ml.proposals.propose`, which also decides, per side, "not covered"). A scan that is not CT, or
whose adrenal region is not covered at all, gets a "not assessable" Prediction with the reason — never a guess.
A scan of one gland is judged on that gland; the other side is reported in ``side_details`` as
``{"verdict": "not_assessable", "reason": "not assessable: <what is missing>"}``.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


from adrenal_site.jobs.runner import JobCancelled, no_progress
from adrenal_site.storage import local_path
from annotations.models import Dataset, ImportItem, Series
from annotations.services.importer import import_path, thinnest_scan
from inference.ml import assessability, verdict
from inference.ml.acquisition import acquisition_cautions
from inference.ml.geometry import Box
from inference.ml.calibration import Calibrator
from inference.ml.dicom.headers import content_hash
from inference.ml.images25d import build_images, build_scan_images
from inference.ml.proposals import propose
from inference.ml.volume import Volume, load_nifti

from ..models import Evaluation, Prediction, TrainingRun
from .ensembles import ensemble_for
from .gland_data import is_gland_run
from .runs import scan_contrast, training_acquisition
from .verdicts import probability_cutoff, side_findings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """A verdict (or why there is none), before it is stored."""

    verdict: str
    reason: str = ""
    result: verdict.ScanVerdict | verdict.GlandVerdict | None = None
    timings: dict | None = None
    uncovered: dict[str, str] = field(default_factory=dict)  # sides not judged: what is missing
    cautions: list[str] = field(default_factory=list)  # why this verdict is less certain than the validation

    def fields(self, operating_value: float) -> dict:
        r = self.result
        gland = isinstance(r, verdict.GlandVerdict)
        return {
            "verdict": self.verdict, "reason": self.reason, "operating_value": operating_value,
            "probability": r.probability if r else None, "fraction": r.fraction if r else None,
            "sides": r.sides if r else {}, "flagged_slices_mm": r.flagged_slices_mm if r else [],
            "slice_scores": r.slice_scores if r else [],
            "score": r.score if gland else None, "side_details": r.side_details if gland else {},
            "evidence": r.evidence if gland else [], "cautions": list(self.cautions),
        }

    def stored_fields(self, operating_value: float) -> dict:
        """``fields`` with each side in ``uncovered`` reported "not assessable: <note>" in ``side_details`` (and
        left out of ``sides``) while the scan's verdict is the judged side's."""
        out = self.fields(operating_value)
        uncovered = self.uncovered
        if uncovered and self.verdict != Prediction.Verdict.NOT_ASSESSABLE:
            out["sides"] = {s: v for s, v in out["sides"].items() if s not in uncovered}
            out["side_details"] = {**{s: d for s, d in out["side_details"].items() if s not in uncovered},
                                   **{s: side_not_assessable(n) for s, n in uncovered.items()}}
        return out


def side_not_assessable(note: str) -> dict:
    """A side that was not judged: ``{"verdict": "not_assessable", "reason": "not assessable: <note>"}``."""
    return {"verdict": Prediction.Verdict.NOT_ASSESSABLE.value, "reason": f"not assessable: {note}"[:300]}


# --- judging a volume ------------------------------------------------------------------------------------

def judge_volume(volume: Volume, run: TrainingRun, *, modality: str | None = "CT",
                 boxes: dict[str, Box] | None = None, not_covered_reason: str = "",
                 uncovered: dict[str, str] | None = None, contrast: bool | None = None,
                 progress: Callable[[float, str], None] | None = None) -> Outcome:
    """Assess, build the 2.5D images, run the ensemble; "not assessable" with the reason when it cannot.

    ``boxes``: the sides to judge (None: proposed here); ``uncovered``: sides whose gland is outside the field
    of view, with what is missing (from the proposal when proposed here): those are reported "not assessable:
    <note>" (``Outcome.stored_fields``) and the scan is judged on the other side. A verdict on a scan whose
    voxel size is outside the run's training scans, or whose header records a contrast agent (``contrast``: True,
    False, None for unknown) unlike every training scan's, carries ``cautions`` (:mod:`inference.ml.acquisition`)."""
    report = progress or no_progress
    t0 = time.perf_counter()
    reason = assessability.check_ct(volume, modality)
    if reason:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, reason)
    if not_covered_reason:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, not_covered_reason)
    uncovered = dict(uncovered or {})
    if not boxes:
        report(15, "proposing crop boxes")
        proposal = propose(volume)
        if proposal.status != "proposed":
            return Outcome(Prediction.Verdict.NOT_ASSESSABLE, proposal.reason)
        boxes = proposal.boxes
        uncovered = {s: p.note or "outside the field of view" for s, p in proposal.sides.items()
                     if p.status != "proposed"}
    uncovered = {s: uncovered.get(s) or f"no crop box for side {s}" for s in ("R", "L") if s not in boxes}
    outcome = _judge(volume, boxes, run, t0, report)
    outcome.uncovered = uncovered
    if outcome.verdict != Prediction.Verdict.NOT_ASSESSABLE:
        outcome.cautions = acquisition_cautions(volume.spacing, training_acquisition(run), contrast=contrast)
    return outcome


def _judge(volume: Volume, boxes: dict[str, Box], run: TrainingRun, t0: float,
           report: Callable[[float, str], None]) -> Outcome:
    t1 = time.perf_counter()
    report(30, "building 2.5D images")
    if is_gland_run(run.config):
        return _judge_glands(volume, boxes, run, t0, t1, report)
    try:
        images, z_mm = build_images(volume, boxes, run.config or {}, blank_missing=True)
    except ValueError as exc:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, f"no 2.5D images: {exc}")
    if len(images) == 0:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, "the boxes give no 2.5D images")
    t2 = time.perf_counter()
    report(50, f"running the fold ensemble on {len(images)} images")
    ensemble = ensemble_for(run)
    t3 = time.perf_counter()
    result = verdict.scan_verdict(images, z_mm, ensemble, run.operating_value)
    result.sides = {s: v for s, v in result.sides.items() if s in boxes}
    t4 = time.perf_counter()
    return Outcome(result.verdict, "", result, {"assess_s": t1 - t0, "images_s": t2 - t1, "load_s": t3 - t2,
                                                 "model_s": t4 - t3, "images": len(images)})


def run_calibrator(run: TrainingRun) -> Calibrator:
    """The calibration fitted by the run's latest evaluation (identity when it has none)."""
    ev = Evaluation.objects.filter(run=run).order_by("-created_at", "-pk").first()
    return Calibrator.from_dict(((ev.result or {}).get("calibration") or {}).get("fit") if ev else None)


def _judge_glands(volume: Volume, boxes: dict[str, Box], run: TrainingRun, t0: float, t1: float,
                  report: Callable[[float, str], None]) -> Outcome:
    """Per-gland runs: each side's images from its own box, the ensemble over both in one batch, per-side
    findings and evidence maps (``inference.ml.verdict.gland_verdict``)."""
    try:
        sides = build_scan_images(volume, boxes, run.config)
    except ValueError as exc:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, f"no 2.5D images: {exc}")
    n = sum(len(s.images) for s in sides.values())
    if n == 0:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, "the boxes give no 2.5D images")
    t2 = time.perf_counter()
    report(50, f"running the fold ensemble on {n} images of {len(sides)} glands")
    ensemble = ensemble_for(run)
    t3 = time.perf_counter()
    top_k = int((run.config or {}).get("mil", {}).get("top_k", 2))
    result = verdict.gland_verdict(sides, ensemble, run.operating_value, top_k=top_k, calibrator=run_calibrator(run))
    t4 = time.perf_counter()
    return Outcome(result.verdict, "", result, {"assess_s": t1 - t0, "images_s": t2 - t1, "load_s": t3 - t2,
                                                 "model_s": t4 - t3, "images": n})


def stored_boxes(series) -> dict[str, Box] | None:
    """The scan's stored boxes by side (one per side: confirmed, or proposed), None when it has none."""
    boxes = {b.side: Box(tuple(b.lps_min), tuple(b.lps_max)) for b in series.boxes.all()}
    return boxes or None


def predict_series(series, run: TrainingRun, *, job=None, user=None,
                   progress: Callable[[float, str], None] | None = None) -> Prediction:
    """Judge an imported series with ``run`` and store the Prediction (one per job and scan: a re-delivered job
    updates it)."""
    report = progress or no_progress
    report(5, "loading the volume")
    vol_row = getattr(series, "volume", None)
    if vol_row is None or not vol_row.file:
        outcome = Outcome(Prediction.Verdict.NOT_ASSESSABLE, "the series has no volume (not imported as CT)")
    else:
        volume = load_nifti(local_path(vol_row.file.name))
        not_covered = series.box_status_reason or "adrenal region not covered" \
            if series.box_status == Series.BoxStatus.NOT_COVERED else ""
        outcome = judge_volume(volume, run, modality=series.modality or "CT", boxes=stored_boxes(series),
                               not_covered_reason=not_covered, uncovered=series.uncovered_sides or {},
                               contrast=scan_contrast(series), progress=report)
    caution = in_sample_caution(series, run)
    if caution and outcome.verdict != Prediction.Verdict.NOT_ASSESSABLE:
        outcome.cautions.append(caution)
    fields = outcome.stored_fields(run.operating_value)
    if job is not None:  # one Prediction per job and scan: a re-delivered job updates it
        prediction, _ = Prediction.objects.update_or_create(
            job=job, series=series, defaults={"run": run, "created_by": user, **fields})
    else:
        prediction = Prediction.objects.create(series=series, run=run, created_by=user, **fields)
    report(100, f"{prediction.get_verdict_display()}" + (f": {prediction.reason}" if prediction.reason else ""))
    return prediction


def in_sample_caution(series, run: TrainingRun) -> str:
    """A caution for a verdict on a scan whose patient is one of ``run``'s training (train-val) patients: the model
    learnt from it, so the verdict says nothing about how it does on new patients; "" otherwise (the run's test
    patients and every other scan are out of sample). The patient is matched by pseudonym in any dataset: the
    same PatientID under the same key, so a training patient's study uploaded for a verdict, or received from the
    PACS, into another dataset ("Submitted studies", "Received") is still in sample."""
    patient = series.study.patient
    if patient.pseudo_id not in {p for f in run.split.folds for p in f}:
        return ""
    return (f"in-sample: patient {patient.pseudo_id} was one of the {run.split.n_patients - len(run.split.test_patients)}"
            f" patients model run {run.pk} trained on, so this verdict does not show how the model does on new "
            "patients (its test patients and new scans do)")


# --- reading a path (the command, uploads) ---------------------------------------------------------------

def import_for_prediction(path: str | Path, dataset: Dataset | None = None, user=None,
                          progress=None, source: str = "") -> tuple[Series | None, str]:
    """``(series, "")``: the scan at ``path`` (a local path) imported by the store's importer (into ``dataset``,
    else "Submitted studies"; its report records ``source``), or ``(None, reasons)`` when nothing usable came in."""
    dataset = dataset or Dataset.objects.get_or_create(name="Submitted studies")[0]
    report = import_path(dataset, path, user=user, progress=progress, source=source, nifti_patient_by_content=True)
    items = list(report.items.select_related("series__volume", "series__study__patient"))
    imported = [i.series for i in items if i.status == ImportItem.Status.IMPORTED and i.series_id]
    if imported:
        return one_study_scan(imported)
    for item in items:  # already imported before: the reason names the series
        m = re.search(r"series #(\d+)", item.reason or "")
        if item.status == ImportItem.Status.SKIPPED and m:
            series = Series.objects.filter(pk=int(m.group(1))).first()
            if series is not None:
                if not may_share(series, path, user):
                    return None, (f"no usable scan: {item.path}: its SOP Instance UIDs are those of a scan already "
                                  "stored, which these files do not hold byte for byte (every instance, the same "
                                  "bytes); not judged")
                return series, ""
    reasons = "; ".join(f"{i.path}: {i.reason}" for i in items if i.reason) or "nothing imported"
    return None, f"no usable scan: {reasons}"


def one_study_scan(series: list[Series]) -> tuple[Series | None, str]:
    """The scan to judge among those an upload brought in: of one study, its thinnest axial soft-tissue scan
    (``importer.thinnest_scan``: a study exported whole holds a thin and a thick series, phases, reformats); of
    several studies ``(None, reason)`` naming them: a verdict is one study's, and judging whichever came first
    gave one patient's verdict for an upload of several, with nothing said of the others."""
    scans = [s for s in series if getattr(s, "volume", None) is not None and s.is_scan] or series
    studies = {s.study_id for s in scans}
    if len(studies) > 1:
        patients = sorted({s.study.patient.pseudo_id for s in scans})
        return None, (f"not judged: the upload holds {len(scans)} scans of {len(studies)} studies (patients "
                      f"{', '.join(patients[:10])}{', ...' if len(patients) > 10 else ''}); a verdict is for one "
                      "study: upload each on its own")
    return thinnest_scan(scans), ""


def may_share(series: Series, path: str | Path, user) -> bool:
    """Whether an upload at ``path`` that the importer found already stored as ``series`` may be judged as that
    scan for ``user`` (who then may open it, ``Series.submitted_by``): yes for a user who may see it already or no
    user (the command line); otherwise only when the upload holds every instance of the scan with the same bytes
    (``SourceInstance.sha1``; a NIfTI's key is its hash). The importer knows a DICOM file by its SOP Instance UID,
    which is no secret: one file carrying another submission's UIDs opened that whole scan to its uploader."""
    if not getattr(user, "is_authenticated", False):
        return True
    if Series.objects.visible_to(user).filter(pk=series.pk).exists():
        return True
    stored = {sha1 or (key.removeprefix("nifti-sha1:") if key.startswith("nifti-sha1:") else "")
              for key, sha1 in series.instances.values_list("key", "sha1")}
    if not stored or "" in stored:
        return False  # no instances, or some imported before their hash was kept: nothing to compare
    root = Path(path)
    files = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return stored <= {content_hash(p) for p in files}


def predict_path(path: str | Path, run: TrainingRun, *, job=None, user=None, dataset=None,
                 progress: Callable[[float, str], None] | None = None, source: str = "") -> dict:
    """Judge the study at ``path`` (a local path): imported with the store's importer and stored as a
    Prediction. ``source`` names it in the import report and the document (an upload's file name; default: the
    path). Returns the ``predict --json`` document ("not assessable" with the reasons when nothing usable came
    in); a side left unjudged (null in ``sides``) has its reason in ``side_reasons``, as the pages give it."""
    if not Path(path).exists():
        raise ValueError(f"{source or path} does not exist")
    series, reason = import_for_prediction(path, dataset, user, source=source)
    if series is None:
        (progress or no_progress)(100, f"not assessable: {reason}")
        return document(source or str(path), None, Prediction.Verdict.NOT_ASSESSABLE, reason, run.operating_value,
                        {}, [])
    if dataset is None and getattr(user, "is_authenticated", False):
        # the submitter can always open what they submitted to "Submitted studies"; an upload into a dataset of
        # theirs is that dataset's (its scan may be one already there): membership alone opens it, so one removed
        # from the dataset loses it as every other scan and verdict of it
        series.submitted_by.add(user)
    p = predict_series(series, run, job=job, user=user, progress=progress)
    return document(series.series_uid, p.probability, p.verdict, p.reason, run.operating_value, p.sides,
                    p.flagged_slices_mm, prediction=p.pk, series=series.pk, side_reasons=unjudged_sides(p) or None,
                    cautions=p.cautions or None, score=p.score, probability_cutoff=probability_cutoff(p))


def unjudged_sides(p: Prediction) -> dict[str, str]:
    """``{side: reason}`` for each side of a verdict that has no probability, with the reason its findings give
    (``"not assessable: <note>"`` from ``side_details`` for a side the scan does not hold); empty when both sides
    were judged or the whole scan was not assessable (then the scan's ``reason`` says why)."""
    if p.verdict == Prediction.Verdict.NOT_ASSESSABLE:
        return {}
    return {f["side"]: f["reason"] for f in side_findings(p)
            if (p.sides or {}).get(f["side"]) is None and f["reason"]}


def document(series_uid, probability, verdict_, reason, operating_value, sides, flagged, **extra) -> dict:
    if verdict_ == Prediction.Verdict.NOT_ASSESSABLE:
        verdict_ = Prediction.Verdict.NOT_ASSESSABLE.label  # "not assessable"
    doc = {"series_uid": series_uid, "probability": probability, "verdict": str(verdict_),
           "operating_value": operating_value, "sides": {"R": sides.get("R"), "L": sides.get("L")},
           "flagged_slices_mm": list(flagged)}
    if reason:
        doc["reason"] = reason
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc


# --- every scan of a dataset -----------------------------------------------------------------------------

def judge_dataset(dataset: Dataset, run: TrainingRun, *, force: bool = False, job=None, user=None,
                  progress: Callable[[float, str], None] | None = None) -> dict:
    """Judge every scan of ``dataset`` with ``run``, one after another in this job (the ensemble is loaded
    once), a Prediction stored per scan as it is judged. Idempotent: a scan that already has a verdict of
    ``run`` is skipped unless ``force`` (a re-delivered job skips what it judged before it died). One scan's
    error never stops the others: it is reported by series id.

    Returns ``{"run", "dataset", "scans", "judged", "skipped", "verdicts": {verdict: count}, "errors": [...]}``.
    """
    report = progress or no_progress
    scans = list(Series.objects.filter(study__patient__dataset=dataset, is_scan=True)
                 .select_related("volume", "study__patient__dataset").prefetch_related("boxes").order_by("pk"))
    done = set(Prediction.objects.filter(run=run, series__in=scans).values_list("series_id", flat=True))
    if force and job is not None:  # forced: only what this very job judged already is skipped
        done = set(Prediction.objects.filter(run=run, job=job).values_list("series_id", flat=True))
    elif force:
        done = set()
    out = {"run": run.pk, "dataset": dataset.pk, "scans": len(scans), "judged": 0, "skipped": 0,
           "verdicts": {}, "errors": []}
    for i, series in enumerate(scans):
        lo, hi = 100.0 * i / max(len(scans), 1), 100.0 * (i + 1) / max(len(scans), 1)
        if series.pk in done:
            out["skipped"] += 1
            report(hi, f"scan {i + 1}/{len(scans)}: judged before by run {run.pk}")
            continue
        report(lo, f"scan {i + 1}/{len(scans)}: {series.patient.pseudo_id}")
        try:
            p = predict_series(series, run, job=job, user=user,
                               progress=lambda pct, msg="", lo=lo, hi=hi, n=i: report(
                                   lo + (hi - lo) * pct / 100.0, f"scan {n + 1}/{len(scans)}: {msg}"))
        except JobCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - one scan's failure (a corrupt stored volume too) is reported, the rest go on
            log.exception("judging series %s", series.pk)
            out["errors"].append({"series": series.pk, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        out["judged"] += 1
        out["verdicts"][p.verdict] = out["verdicts"].get(p.verdict, 0) + 1
    counts = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in sorted(out["verdicts"].items())) or "none new"
    report(100.0, f"{out['judged']} judged ({counts}), {out['skipped']} judged before, {len(out['errors'])} errors")
    return out
