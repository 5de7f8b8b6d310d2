"""Verdicts for new studies with a promoted model: boxes, 2.5D images, the fold ensemble, a stored Prediction.

Boxes are the scan's stored ones (confirmed, else proposed) when both sides exist; otherwise they are
proposed (:func:`inference.ml.proposals.propose`, which also decides "adrenal region not covered"). A scan that is not CT, or whose adrenal region
is not covered, gets a "not assessable" Prediction with the reason — never a guess.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from inference.ml import assessability, verdict
from inference.ml.geometry import Box
from inference.ml.images25d import build_images
from inference.ml.proposals import propose
from inference.ml.training import load_ensemble
from inference.ml.volume import Volume, load_nifti

from .models import Prediction, TrainingRun

_CACHE_LOCK = threading.Lock()
_ENSEMBLES: dict[tuple, object] = {}


@dataclass
class Outcome:
    """A verdict (or why there is none), before it is stored."""

    verdict: str
    reason: str = ""
    result: verdict.ScanVerdict | None = None
    timings: dict | None = None

    def fields(self, operating_value: float) -> dict:
        r = self.result
        return {
            "verdict": self.verdict, "reason": self.reason, "operating_value": operating_value,
            "probability": r.probability if r else None, "fraction": r.fraction if r else None,
            "sides": r.sides if r else {}, "flagged_slices_mm": r.flagged_slices_mm if r else [],
            "slice_scores": r.slice_scores if r else [],
        }


# --- the model -------------------------------------------------------------------------------------------

def resolve_run(run_id: int | str | None = None, dataset=None) -> TrainingRun:
    """The given run, else the dataset's promoted one; it must have an operating value."""
    if run_id:
        run = TrainingRun.objects.filter(pk=int(run_id)).first()
        if run is None:
            raise ValueError(f"no training run {run_id}")
    else:
        run = TrainingRun.objects.filter(promoted=True, **({"dataset": dataset} if dataset else {})).first()
        if run is None:
            raise ValueError("no promoted model: promote a run (or name one with --run)")
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ValueError(f"run {run.pk} is {run.status}; only a finished run gives verdicts")
    if run.operating_value is None:
        raise ValueError(f"run {run.pk} has no operating value yet: evaluate it first")
    return run


def weight_paths(run: TrainingRun) -> list[Path]:
    media = Path(settings.MEDIA_ROOT)
    paths = [media / f.weights for f in run.folds.order_by("fold") if f.weights]
    if not paths and run.artifacts_dir:
        paths = sorted((media / run.artifacts_dir).glob("fold*/best.pt"), key=lambda p: int(p.parent.name[4:]))
    missing = [str(p) for p in paths if not p.exists()]
    if not paths or missing:
        raise ValueError(f"run {run.pk} has no fold weights" + (f": missing {missing}" if missing else ""))
    return paths


def ensemble_for(run: TrainingRun):
    """The run's fold ensemble, loaded once per process (a worker keeps it warm between scans)."""
    paths = weight_paths(run)
    key = (run.pk, tuple((str(p), p.stat().st_mtime) for p in paths))
    with _CACHE_LOCK:
        if key not in _ENSEMBLES:
            _ENSEMBLES.clear()  # one model in memory at a time
            _ENSEMBLES[key] = load_ensemble(paths, run.config or {})
        return _ENSEMBLES[key]


# --- judging a volume ------------------------------------------------------------------------------------

def judge_volume(volume: Volume, run: TrainingRun, *, modality: str | None = "CT",
                 boxes: dict[str, Box] | None = None, not_covered_reason: str = "",
                 progress: Callable[[float, str], None] | None = None) -> Outcome:
    """Assess, build the 2.5D images, run the ensemble; "not assessable" with the reason when it cannot."""
    import time

    report = progress or (lambda p, m="": None)
    t0 = time.perf_counter()
    reason = assessability.check_ct(volume, modality)
    if reason:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, reason)
    if not_covered_reason:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, not_covered_reason)
    if boxes is None:
        report(15, "proposing crop boxes")
        proposal = propose(volume)
        if proposal.status != "proposed":
            return Outcome(Prediction.Verdict.NOT_ASSESSABLE, proposal.reason)
        boxes = proposal.boxes
    t1 = time.perf_counter()
    report(30, "building 2.5D images")
    try:
        images, z_mm = build_images(volume, boxes, run.config or {})
    except ValueError as exc:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, f"no 2.5D images: {exc}")
    if len(images) == 0:
        return Outcome(Prediction.Verdict.NOT_ASSESSABLE, "the boxes give no 2.5D images")
    t2 = time.perf_counter()
    report(50, f"running the fold ensemble on {len(images)} images")
    ensemble = ensemble_for(run)
    t3 = time.perf_counter()
    result = verdict.scan_verdict(images, z_mm, ensemble, run.operating_value)
    t4 = time.perf_counter()
    return Outcome(result.verdict, "", result, {"assess_s": t1 - t0, "images_s": t2 - t1, "load_s": t3 - t2,
                                                 "model_s": t4 - t3, "images": len(images)})


def stored_boxes(series) -> dict[str, Box] | None:
    boxes = {b.side: Box(tuple(b.lps_min), tuple(b.lps_max)) for b in series.boxes.all()}
    return boxes if set(boxes) == {"R", "L"} else None


def predict_series(series, run: TrainingRun | None = None, *, job=None, user=None,
                   progress: Callable[[float, str], None] | None = None) -> Prediction:
    """Judge an imported series and store the Prediction (one per job: a re-delivered job updates it)."""
    from annotations.models import Series

    run = run or resolve_run(dataset=series.study.patient.dataset)
    report = progress or (lambda p, m="": None)
    report(5, "loading the volume")
    vol_row = getattr(series, "volume", None)
    if vol_row is None or not vol_row.file:
        outcome = Outcome(Prediction.Verdict.NOT_ASSESSABLE, "the series has no volume (not imported as CT)")
    else:
        volume = load_nifti(Path(settings.MEDIA_ROOT) / vol_row.file.name)
        not_covered = series.box_status_reason or "adrenal region not covered" \
            if series.box_status == Series.BoxStatus.NOT_COVERED else ""
        outcome = judge_volume(volume, run, modality=series.modality or "CT", boxes=stored_boxes(series),
                               not_covered_reason=not_covered, progress=report)
    fields = outcome.fields(run.operating_value)
    if job is not None:
        prediction, _ = Prediction.objects.update_or_create(
            job=job, defaults={"series": series, "run": run, "created_by": user, **fields})
    else:
        prediction = Prediction.objects.create(series=series, run=run, created_by=user, **fields)
    report(100, f"{prediction.get_verdict_display()}" + (f": {prediction.reason}" if prediction.reason else ""))
    return prediction


# --- reading a path (the command, uploads) ---------------------------------------------------------------

def read_path(path: str | Path) -> tuple[Volume, str, str]:
    """``(volume, modality, series_uid)`` from a NIfTI file or a DICOM folder (the largest usable series),
    with the DICOM core of the import area."""
    from inference.ml import dicom

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.is_file() and dicom.is_nifti(path):
        volume = dicom.load_nifti_entry(path)
        return volume, "CT", f"nifti:{path.name}"
    headers = []
    for f in dicom.scan_files(path):
        try:
            headers.append(dicom.read_header(f))
        except dicom.NotDicom:
            continue
    if not headers:
        raise ValueError(f"{path}: no NIfTI file or DICOM instances found")
    groups = dicom.group_series(headers, path if path.is_dir() else path.parent)
    usable = [g for g in groups if not dicom.exclusion_reason(g)]
    if not usable:
        reasons = "; ".join(f"{g.describe()}: {dicom.exclusion_reason(g)}" for g in groups)
        raise ValueError(f"{path}: no usable series ({reasons})")
    group = max(usable, key=lambda g: g.frame_count)
    loaded = dicom.load_series(group)
    return loaded.volume, str(group.first.meta.get("Modality") or ""), group.key


def import_for_prediction(path: str | Path, dataset=None, user=None, progress=None):
    """``(series, reason)``: the scan imported by the import area's importer (``series`` None and the
    report's reasons when nothing usable came in), or ``(None, None)`` when no importer is available."""
    import re

    try:
        from annotations import importer  # type: ignore[attr-defined]
    except ImportError:
        return None, None
    if not hasattr(importer, "import_path"):
        return None, None
    from annotations.models import Dataset, ImportItem, Series

    dataset = dataset or Dataset.objects.get_or_create(name="Submitted studies")[0]
    report = importer.import_path(dataset, path, user=user, progress=progress)
    items = list(report.items.all())
    for item in items:
        if item.status == ImportItem.Status.IMPORTED and item.series_id:
            return item.series, ""
    for item in items:  # already imported before: the reason names the series
        m = re.search(r"series #(\d+)", item.reason or "")
        if item.status == ImportItem.Status.SKIPPED and m:
            series = Series.objects.filter(pk=int(m.group(1))).first()
            if series is not None:
                return series, ""
    reasons = "; ".join(f"{i.path}: {i.reason}" for i in items if i.reason) or "nothing imported"
    return None, f"no usable scan: {reasons}"


def submit_prediction(user, *, series_id=None, run_id=None, upload=None, dataset_id=None):
    """Queue a verdict job (gpu queue) for an imported series or an uploaded file; returns the Job."""
    from adrenal_site.jobs.runner import enqueue
    from annotations.models import Dataset, Series

    from .tasks.predict import predict_job

    datasets = Dataset.objects.visible_to(user)
    if series_id:
        series = Series.objects.select_related("study__patient__dataset").get(
            pk=int(series_id), study__patient__dataset__in=datasets)
        run = resolve_run(run_id, series.study.patient.dataset)
        return enqueue(predict_job, kind="predict", params={"series_id": series.pk, "run_id": run.pk}, user=user)
    if upload is None:
        raise ValueError("send a series id or a file")
    dataset = datasets.filter(pk=dataset_id).first() if dataset_id else None
    if dataset_id and dataset is None:
        raise ValueError(f"dataset {dataset_id} not found")
    run = resolve_run(run_id, dataset)
    folder = Path(settings.MEDIA_ROOT) / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    target = folder / Path(upload.name).name
    with open(target, "wb") as fh:
        for chunk in upload.chunks():
            fh.write(chunk)
    if target.suffix == ".zip":
        import zipfile

        with zipfile.ZipFile(target) as zf:
            zf.extractall(folder / "unzipped")
        target.unlink()
        target = folder / "unzipped"
    params = {"path": str(target), "run_id": run.pk, "dataset_id": dataset.pk if dataset else None}
    return enqueue(predict_job, kind="predict", params=params, user=user)


def predict_path(path: str | Path, run: TrainingRun, *, job=None, user=None, dataset=None,
                 progress: Callable[[float, str], None] | None = None) -> dict:
    """Judge the study at ``path``: imported with the import area's importer and stored as a Prediction
    (read and judged in memory only when no importer is installed). Returns the ``predict --json`` document."""
    if not Path(path).exists():
        raise ValueError(f"{path} does not exist")
    series, reason = import_for_prediction(path, dataset, user)
    if series is not None:
        p = predict_series(series, run, job=job, user=user, progress=progress)
        return document(series.series_uid, p.probability, p.verdict, p.reason, run.operating_value, p.sides,
                        p.flagged_slices_mm, prediction=p.pk, series=series.pk)
    if reason:
        return document(str(path), None, Prediction.Verdict.NOT_ASSESSABLE, reason, run.operating_value, {}, [])
    try:
        volume, modality, uid = read_path(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable input is not assessable, with the reason
        from inference.ml import dicom

        if isinstance(exc, (ValueError, dicom.SeriesError)):
            return document(str(path), None, Prediction.Verdict.NOT_ASSESSABLE, str(exc), run.operating_value, {}, [])
        raise
    outcome = judge_volume(volume, run, modality=modality, progress=progress)
    f = outcome.fields(run.operating_value)
    return document(uid, f["probability"], f["verdict"], f["reason"], run.operating_value, f["sides"],
                    f["flagged_slices_mm"], timings=outcome.timings)


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
