"""Evaluating a training run on its split's persisted test patients (image, scan and patient level).

Reads the run's ``predictions.csv`` (written by the training aggregation step), chooses the operating
value on out-of-fold train-val scans for every aggregator, applies it to the test scans, and stores the
whole document as an :class:`~inference.models.Evaluation` (the ``evaluate --json`` shape). The run's
``operating_value``/``objective`` are set from the original rule (fraction of images voted abnormal).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import no_progress
from adrenal_site.storage import local_path
from inference.ml import calibration as C
from inference.ml import metrics as M
from inference.ml import operating_value as OV
from inference.ml.verdict import blank_side, verdict_of

from ..models import Evaluation, Image25D, TrainingRun
from .ensembles import ensemble_for
from .runs import run_dir

PRIMARY = "fraction"
LEVEL_KEYS = ("auc", *M.METRICS)


def predictions_path(run: TrainingRun) -> Path:
    if not run.artifacts_dir:
        raise ValueError(f"run {run.pk} has no artifacts yet (status {run.status})")
    path = run_dir(run) / "predictions.csv"
    if not path.exists():
        raise ValueError(f"run {run.pk} has no predictions: {path} is missing")
    return path


def _label(value: int) -> str:
    return "abnormal" if value else "normal"


def _outcome(pred: bool, label: int) -> str:
    return ("tp" if label else "fp") if pred else ("fn" if label else "tn")


def learning_curves(run: TrainingRun) -> list[dict]:
    """Per-fold history from the database, else from ``fold<k>/history.json``."""
    curves = []
    for fold in run.folds.all():
        history = fold.history
        if not history and run.artifacts_dir:
            f = run_dir(run) / f"fold{fold.fold}" / "history.json"
            if f.exists():
                history = json.loads(f.read_text())
        curves.append({"fold": fold.fold, "best_epoch": fold.best_epoch, "val_loss": fold.val_loss,
                       "history": history or []})
    return curves


def _check_split(run: TrainingRun, oof: OV.OutOfFold, test: OV.TestImages) -> list[str]:
    expected = set(map(str, run.split.test_patients or []))
    got = {r.patient for r in test.rows}
    if not got:
        raise ValueError(f"run {run.pk}: predictions.csv has no test rows")
    if expected and not got <= expected:
        raise ValueError(f"run {run.pk}: test rows of patients {sorted(got - expected)} not in the split's test patients")
    leaked = {r.patient for r in oof.rows} & (expected or got)
    if leaked:
        raise ValueError(f"run {run.pk}: patients {sorted(leaked)} are in both train-val and test")
    return sorted(got)


def _strip(level: dict) -> dict:
    return {k: v for k, v in level.items() if k not in ("roc", "threshold_curve")}


def evaluate_run(
    run: TrainingRun,
    objective: str | None = None,
    *,
    boot: M.Bootstrap | None = None,
    top_k: int = OV.DEFAULT_TOP_K,
    progress: Callable[[float, str], None] = no_progress,
    job=None,
) -> Evaluation:
    """Evaluate ``run`` on its test patients, store an Evaluation (done by ``job``, if any: one per job, so a job
    delivered again replaces its own) and set the run's operating value."""
    report = progress
    if run.status in (Job.Status.FAILED, Job.Status.CANCELLED):
        raise ValueError(f"run {run.pk} {run.status}: only a finished run can be evaluated")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top-k must be a whole number of at least 1, not {top_k!r}")
    boot = boot or M.Bootstrap(n=getattr(settings, "EVALUATION_BOOTSTRAP", 1000), seed=0)
    objective = str(OV.parse_objective(objective or run.objective or "accuracy"))
    rows = OV.read_predictions_csv(predictions_path(run))
    oof, test = OV.split_rows(rows)
    test_patients = _check_split(run, oof, test)
    report(10, "image level")

    image = M.evaluate_level(test.image_labels, test.probs, test.patients, OV.IMAGE_VOTE, boot)
    aggregators: dict[str, dict] = {}
    primary_scans = None
    primary = primary_aggregator(run)
    side_k = int((run.config or {}).get("mil", {}).get("top_k", OV.SIDE_TOP_K))
    for i, agg in enumerate(OV.AGGREGATORS):
        report(20 + 60 * i / len(OV.AGGREGATORS), f"scan level: {agg}")
        k = side_k if agg == "sides" else top_k
        choice = OV.choose_operating_value(oof, objective, agg, k)
        scans = OV.scan_scores(test, agg, k)
        y, s, g = scans.arrays()
        level = M.evaluate_level(y, s, g, choice.operating_value, boot)
        # scores as computed (not rounded): the slider, ``metrics_at`` and the prevalence answer compare them with
        # the operating value, which a rounded score can fall the other side of (a fraction 1/7 stored as 0.142857)
        level.update(operating_value=choice.operating_value, oof=dict(choice.oof_metrics), oof_scans=choice.n_scans,
                     scores=[[float(v), int(lab), str(p)] for v, lab, p in zip(s, y, g)])
        if agg == "topk":
            level["top_k"] = top_k
        if agg == "sides":
            level["top_k"] = k
        aggregators[agg] = level
        if agg == primary:
            primary_scans = scans
    report(80, "per-side scores")
    if primary == "sides":  # per-gland runs: each side's own score, from the same predictions
        sides = {uid: {k2: float(v) for k2, v in sd.items()} for uid, sd in zip(primary_scans.series_uid,
                                                                                primary_scans.sides)}
        sides_note = ""
    else:
        sides, sides_note = side_scores(run, primary_scans)
    report(85, "patient level")
    value = aggregators[primary]["operating_value"]
    patient = _patient_level(primary_scans, value, boot)
    result = {
        "run": run.pk,
        "operating_value": value,
        "objective": objective,
        "aggregator": primary,
        "calibration": calibration_report(run, oof, primary_scans, primary, side_k if primary == "sides" else top_k),
        "image": image,
        "scan": aggregators[primary],
        "patient": patient,
        "scans": _scan_rows(primary_scans, value, sides),
        "sides_note": sides_note,
        "aggregators": aggregators,
        "test_patients": test_patients,
        "bootstrap": {"n": boot.n, "seed": boot.seed, "level": boot.level, "resampled_by": "patient"},
        "learning_curves": learning_curves(run),
    }
    result["reading_aids"] = reading_aids(result)
    fields = {"run": run, "objective": objective, "aggregator": primary, "operating_value": value, "result": result}
    with transaction.atomic():
        if job is None:  # ``manage.py evaluate``: each call is an evaluation of its own
            evaluation = Evaluation.objects.create(job=None, **fields)
        else:  # keyed by its job: a re-delivered ``evaluate`` job rewrites its evaluation, it adds no second one
            evaluation, _ = Evaluation.objects.update_or_create(job=job, defaults=fields)
        TrainingRun.objects.filter(pk=run.pk).update(operating_value=value, objective=objective)
        run.operating_value, run.objective = value, objective
    report(100, f"operating value {value:.3f} ({objective})")
    return evaluation


def primary_aggregator(run: TrainingRun) -> str:
    """The run's own scan rule: ``sides`` for per-gland runs, the original image vote otherwise."""
    agg = (run.config or {}).get("aggregator", PRIMARY)
    return agg if agg in OV.AGGREGATORS else PRIMARY


def calibration_report(run: TrainingRun, oof: OV.OutOfFold, test_scans: OV.ScanScores, aggregator: str,
                       top_k: int) -> dict:
    """The run's calibration (``config["calibration"]``: temperature, isotonic or identity) fitted on its
    out-of-fold scan scores, with reliability bins and the ECE out-of-fold and on the test scans before/after.
    Verdicts read ``fit`` (``Calibrator.from_dict``)."""
    method = (run.config or {}).get("calibration", "identity")
    oof_scans = OV.scan_scores(oof, aggregator, top_k)
    try:
        cal = C.fit(oof_scans.score, oof_scans.label, method)
    except ValueError as exc:
        return {"fit": C.Calibrator().to_dict(), "note": str(exc)}
    y, s, _ = test_scans.arrays()
    return {"fit": cal.to_dict(), "aggregator": aggregator,
            "oof": {"reliability": C.reliability(cal(oof_scans.score), oof_scans.label),
                    "ece": C.expected_calibration_error(cal(oof_scans.score), oof_scans.label)},
            "test": {"reliability": C.reliability(cal(s), y), "reliability_raw": C.reliability(s, y),
                     "ece": C.expected_calibration_error(cal(s), y),
                     "ece_raw": C.expected_calibration_error(s, y)} if len(y) else {}}


RELIABILITY_BINS = 10


def reading_aids(result: dict, prevalence: float = M.DEFAULT_PREVALENCE) -> dict:
    """The dashboard's reading aids for the test scans of an evaluation document (its primary aggregator):

    - ``reliability``: the reliability diagram (scikit-learn ``calibration_curve``, ``RELIABILITY_BINS`` uniform
      bins over [0, 1]) of the calibrated scan probabilities (the fit in ``result["calibration"]``) and of the raw
      scores: ``{"calibrated"|"raw": {"prob_pred", "prob_true", "count"}}`` per non-empty bin, ``method``, ``ece``;
    - ``pr``: the precision-recall curve (``precision_recall_curve``) of the scan scores: ``precision``,
      ``recall``, ``thresholds``, ``average_precision``, and ``base_rate`` (the test scans' share of abnormal);
      ``operating_point`` the precision and recall at the operating value;
    - ``prevalence``: sensitivity and specificity at the operating value, and PPV/NPV re-stated at ``prevalence``
      (``inference.ml.metrics.predictive_values``; default 1%, ``note`` says why).

    Computed from the stored document, so evaluations made before this existed get it too."""
    agg = result.get("aggregator", PRIMARY)
    level = result.get("aggregators", {}).get(agg) or result.get("scan", {})
    scores = level.get("scores") or []
    y = np.array([int(lab) for _, lab, _ in scores], int)
    s = np.array([float(v) for v, _, _ in scores], float)
    value = float(result.get("operating_value", level.get("operating_value", 0.5)))
    sens, spec = level.get("sensitivity"), level.get("specificity")
    out: dict = {"aggregator": agg, "n_scans": int(len(y)), "operating_value": value,
                 "prevalence": {"default": M.DEFAULT_PREVALENCE, "note": M.PREVALENCE_NOTE, "sensitivity": sens,
                                "specificity": spec, **M.predictive_values(sens, spec, prevalence)}}
    if len(y) == 0 or np.unique(y).size < 2:
        out["note"] = "the test scans need both classes for a reliability diagram and a precision-recall curve"
        return out
    fit = (result.get("calibration") or {}).get("fit")
    cal = C.Calibrator.from_dict(fit)
    probs = {"calibrated": np.clip(cal(s), 0.0, 1.0), "raw": np.clip(s, 0.0, 1.0)}
    reliability: dict = {"method": cal.method, "bins": RELIABILITY_BINS, "strategy": "uniform"}
    for name, p in probs.items():
        prob_true, prob_pred = calibration_curve(y, p, n_bins=RELIABILITY_BINS, strategy="uniform")
        counts = np.bincount(C.bin_index(p, RELIABILITY_BINS), minlength=RELIABILITY_BINS)  # calibration_curve's
        reliability[name] = {"prob_pred": [round(float(v), 4) for v in prob_pred],
                             "prob_true": [round(float(v), 4) for v in prob_true],
                             "count": [int(c) for c in counts if c > 0],
                             "ece": round(C.expected_calibration_error(p, y, RELIABILITY_BINS), 4)}
    out["reliability"] = reliability
    precision, recall, thresholds = precision_recall_curve(y, s)
    tn, fp, fn, tp = M.confusion(y, s, value)
    out["pr"] = {"precision": [round(float(v), 4) for v in precision], "recall": [round(float(v), 4) for v in recall],
                 "thresholds": [round(float(v), 6) for v in thresholds],
                 "average_precision": round(float(average_precision_score(y, s)), 4),
                 "base_rate": round(float(y.mean()), 4),
                 "operating_point": {"precision": (tp / (tp + fp)) if tp + fp else None,
                                     "recall": (tp / (tp + fn)) if tp + fn else None}}
    return out


def run_aggregator(evaluation: Evaluation) -> str:
    """The scan rule the run's verdicts and chosen operating value use (``sides`` for a per-gland run): what the
    threshold, curves and prevalence answers read when no aggregator is asked for."""
    return evaluation.result.get("aggregator", PRIMARY)


def prevalence_at(evaluation: Evaluation, prevalence: float, value: float | None = None,
                  aggregator: str | None = None) -> dict:
    """Sensitivity and specificity of the test scans at ``value`` (default: the chosen operating value) and the
    PPV/NPV they give at ``prevalence`` (``inference.ml.metrics.predictive_values``). ValueError names a bad
    prevalence or aggregator."""
    result = evaluation.result
    agg = aggregator or run_aggregator(evaluation)
    chosen = result.get("aggregators", {}).get(agg)
    if chosen is None:
        raise ValueError(f"unknown aggregator {agg!r}")
    value = float(chosen.get("operating_value", evaluation.operating_value) if value is None else value)
    at = metrics_at(evaluation, value, "scan", agg)
    return {"operating_value": value, "aggregator": agg, "sensitivity": at["sensitivity"],
            "specificity": at["specificity"], "test_ppv": at["ppv"], "test_npv": at["npv"],
            **M.predictive_values(at["sensitivity"], at["specificity"], prevalence)}


def patient_scores(scores) -> tuple[list[str], list[int], list[float]]:
    """``(patients, labels, scores)`` from ``(score, label, patient)`` scan triples: a patient is abnormal when any
    of their scans is, scored by their highest scan. The one patient-level rule (the evaluation, the slider, the
    curves)."""
    by_patient: dict[str, tuple[int, float]] = {}
    for v, lab, p in scores:
        old = by_patient.get(p, (0, -np.inf))
        by_patient[p] = (max(old[0], int(lab)), max(old[1], float(v)))
    patients = list(by_patient)
    return patients, [by_patient[p][0] for p in patients], [by_patient[p][1] for p in patients]


def _patient_level(scans: OV.ScanScores, value: float, boot: M.Bootstrap) -> dict:
    """A patient is abnormal when any of their scans is (highest scan score); truth likewise."""
    patients, y, s = patient_scores(zip(scans.score, scans.label, scans.patient))
    return M.evaluate_level(y, s, patients, value, boot)


def curves_of(evaluation: Evaluation, level: str, aggregator: str) -> dict:
    """ROC and threshold curve of ``level`` (image, scan, patient) for ``aggregator``, with the operating value
    they are read at: the stored ones, except a patient level of another aggregator than the run's, made from
    that aggregator's scan scores (the stored patient level is the run's rule's). ValueError names a level the
    evaluation lacks."""
    result = evaluation.result
    chosen = result.get("aggregators", {}).get(aggregator)
    doc = chosen if level == "scan" else result.get(level)
    if level == "patient" and isinstance(chosen, dict) and aggregator != result.get("aggregator", PRIMARY):
        _, y, s = patient_scores(chosen.get("scores") or [])
        doc = {"operating_value": chosen["operating_value"], "roc": M.roc(y, s), "threshold_curve": M.threshold_curve(y, s)}
    if not isinstance(doc, dict):
        raise ValueError(f"this evaluation has no {level} curves")
    return {"level": level, "aggregator": aggregator, "operating_value": doc.get("operating_value", doc.get("threshold")),
            "roc": doc.get("roc"), "threshold_curve": doc.get("threshold_curve")}


def side_scores(run: TrainingRun, scans: OV.ScanScores) -> tuple[dict[str, dict], str]:
    """Per-side scores of each test scan: the fold ensemble on its stored 2.5D images with the other side
    blanked, aggregated as the fraction voted abnormal. ``({}, why)`` when images or weights are missing."""
    ids = [int(i) for i in scans.series_id if str(i).isdigit()]
    rows = list(Image25D.objects.filter(series_id__in=ids).order_by("series_id", "slice_index"))
    if not rows:
        return {}, "no stored 2.5D images for the test scans"
    try:
        ensemble = ensemble_for(run)
    except (ValueError, OSError, RuntimeError) as exc:
        return {}, f"per-side scores unavailable: {exc}"
    by_series: dict[int, list] = {}
    for r in rows:
        by_series.setdefault(r.series_id, []).append(r)
    uid_of = {int(i): u for i, u in zip(scans.series_id, scans.series_uid) if str(i).isdigit()}
    out: dict[str, dict] = {}
    for series_id, imgs in by_series.items():
        try:
            stack = np.stack([np.load(local_path(r.file.name)).astype(np.float32) for r in imgs])
        except (OSError, ValueError) as exc:
            return {}, f"per-side scores unavailable: {exc}"
        n = len(stack)
        probs = np.asarray(ensemble.predict(np.concatenate([blank_side(stack, "L"), blank_side(stack, "R")])))
        mean = probs.reshape(2 * n, -1).mean(axis=1)
        out[uid_of[series_id]] = {"R": round(OV.aggregate(mean[:n], "fraction"), 4),
                                  "L": round(OV.aggregate(mean[n:], "fraction"), 4)}
    return out, ""


def _scan_rows(scans: OV.ScanScores, value: float, sides: dict[str, dict] | None = None) -> list[dict]:
    out = []
    for i, uid in enumerate(scans.series_uid):
        imgs = scans.images[i]
        pred = scans.score[i] >= value
        out.append({
            "series_uid": uid,
            "series_id": _int_or_none(scans.series_id[i]),
            "patient": scans.patient[i],
            "probability": round(scans.probability[i], 6),
            "fraction": float(scans.fraction[i]),  # unrounded: each is compared with the operating value
            "score": float(scans.score[i]),
            "verdict": verdict_of(scans.score[i], value),
            "label": _label(scans.label[i]),
            "outcome": _outcome(pred, scans.label[i]),
            "sides": (sides or {}).get(uid, {}),
            "flagged_slices_mm": sorted({round(r.z_mm, 2) for r in imgs if r.prob >= OV.IMAGE_VOTE}),
            "slice_scores": [[round(r.z_mm, 2), round(r.prob, 4)] + ([r.side] if r.side else []) for r in imgs],
        })
    return out


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def metrics_at(evaluation: Evaluation, value: float, level: str = "scan", aggregator: str = PRIMARY) -> dict:
    """Confusion matrix and metrics of a stored evaluation at another operating value (the slider)."""
    result = evaluation.result
    if level not in ("scan", "patient"):
        raise ValueError("level must be scan or patient")
    if aggregator not in result.get("aggregators", {}):
        raise ValueError(f"unknown aggregator {aggregator!r}; this evaluation has "
                         f"{', '.join(result.get('aggregators', {})) or 'none'}")
    if not math.isfinite(value):
        raise ValueError(f"the operating value must be a finite number, not {value!r}")
    if level == "scan":
        scores = result["aggregators"][aggregator]["scores"]
        y = [lab for _, lab, _ in scores]
        s = [v for v, _, _ in scores]
    elif level == "patient":
        _, y, s = patient_scores(result["aggregators"][aggregator]["scores"])
    else:
        raise ValueError("level must be scan or patient")
    tn, fp, fn, tp = M.confusion(y, s, value)
    return {"operating_value": value, "level": level, "aggregator": aggregator,
            "confusion": [[tn, fp], [fn, tp]], **M.metrics_from_confusion(tn, fp, fn, tp)}


def cli_document(evaluation: Evaluation) -> dict:
    """The ``evaluate --json`` document: the issue's keys, curves left to the API."""
    r = evaluation.result
    return {
        "run": r["run"], "operating_value": r["operating_value"], "objective": r["objective"],
        "image": _strip(r["image"]),
        "scan": {k: v for k, v in _strip(r["scan"]).items() if k != "scores"},
        "patient": _strip(r["patient"]),
        "scans": [{k: s[k] for k in ("series_uid", "probability", "fraction", "verdict", "label")} for s in r["scans"]],
        "aggregators": {a: {k: v[k] for k in ("operating_value", *LEVEL_KEYS, "confusion")}
                        for a, v in r["aggregators"].items()},
    }


def evaluation_summary(ev: Evaluation) -> dict:
    scan = ev.result.get("scan", {})
    return {
        "id": ev.pk, "run": ev.run_id, "objective": ev.objective, "aggregator": ev.aggregator,
        "operating_value": ev.operating_value, "created_at": ev.created_at,
        "scan": {k: scan.get(k) for k in ("auc", "auc_ci", "accuracy", "accuracy_ci", "sensitivity", "sensitivity_ci",
                                          "specificity", "specificity_ci", "confusion")},
        "test_patients": len(ev.result.get("test_patients", [])),
    }


def comparison_groups(runs: QuerySet[TrainingRun]) -> list[dict]:
    """``runs`` (those the caller may see) grouped by what their latest evaluations judged: the split version, and the test scans with
    the labels they were evaluated against (a test label corrected, or a test patient unlabelled, between two runs of
    one split makes them two groups: their figures are not on the same test patients). ``[{"split",
    "split_version", "dataset", "test_patients" (evaluated, else the split's), "test_scans", "split_shared" (another
    group has this split version),
    "entries": [(run, latest evaluation's summary or None)]}]`` (the page and the API). Runs not evaluated go with
    their split's first group."""
    runs = [(run, run.evaluations.first())
            for run in runs.select_related("dataset", "split").prefetch_related("evaluations")]
    groups: dict[tuple, dict] = {}
    for run, ev in [(r, e) for r, e in runs if e] + [(r, e) for r, e in runs if not e]:
        judged = tuple(sorted((str(s.get("series_uid")), str(s.get("label"))) for s in ev.result.get("scans", []))) \
            if ev else None
        key = (run.split_id, judged)
        if judged is None:  # nothing judged: beside the split's first group
            key = next((k for k in groups if k[0] == run.split_id), key)
        if key not in groups:
            groups[key] = {"split": run.split_id, "split_version": run.split.version, "dataset": run.dataset.name,
                           "test_patients": len(ev.result.get("test_patients", [])) if ev
                           else len(run.split.test_patients or []),
                           "test_scans": len(judged) if judged is not None else None, "entries": []}
        groups[key]["entries"].append((run, evaluation_summary(ev) if ev else None))
    for (split, _), g in groups.items():
        g["split_shared"] = sum(k[0] == split for k in groups) > 1
    return list(groups.values())
