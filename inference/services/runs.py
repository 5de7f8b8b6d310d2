"""Training runs as a model registry: creating a run's rows, cancelling, promoting, resolving the model new
studies are judged with, and where a run's artifacts live.

Artifacts (storage name ``runs/<run_id>/``, ``adrenal_site.storage``): config.json, init.pt, fold<k>/{best.pt,last.pt,history.json},
predictions.csv.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.db import transaction

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import request_cancel
from adrenal_site.locking import lock
from adrenal_site.roles import ADMIN, has_role
from adrenal_site.storage import local_path
from annotations.models import Dataset
from inference.ml.acquisition import contrast_of
from inference.ml.presets import check_run_overrides, expand_overrides, preset_config
from inference.ml.settings_fields import ConfigError, show

from ..models import DatasetSplit, FoldRun, TrainingRun
from .gland_data import is_gland_run, labelled_scans, marker_labels, patient_labels
from .training_data import ensure_split, image_rows, latest_split


def run_dir(run: TrainingRun) -> Path:
    """The local path of the run's artifacts folder (storage name ``run.artifacts_dir``, ``runs/<id>``)."""
    return local_path(run.artifacts_dir or f"runs/{run.pk}")


ACQUISITION_FILE = "acquisition.json"


def scan_contrast(series) -> bool | None:
    """Whether the series' DICOM header records a contrast agent (``inference.ml.acquisition.contrast_of``); None
    for a scan imported from NIfTI (no header to tell)."""
    return contrast_of(series.contrast_agent, (series.extra or {}).get("source") != "nifti")


def training_acquisition(run: TrainingRun) -> dict | None:
    """The voxel-size range of the run's train-val scans (:func:`inference.ml.acquisition.acquisition_range`,
    written when the run is aggregated), or None for a run without it (made before ranges were recorded, or not
    aggregated yet)."""
    path = run_dir(run) / ACQUISITION_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def check_weights_named_by(user, overrides: dict | None) -> None:
    """A run started by a signed-in user who is not an admin (a lead, through the API) starts from 'auto' or
    'none' weights: ``ConfigError`` for a ``pretrained`` path, before anything looks at it. Checking that such a
    file existed ("no weights file at ...") told any lead which files the server holds, and a path let a lead
    start from another dataset's model (``runs/<id>/fold0/best.pt``). Admins and the command line (no user) name
    weight files as before."""
    if user is None or not getattr(user, "is_authenticated", False) or has_role(user, ADMIN):
        return
    value = expand_overrides(overrides).get("pretrained")
    if value is not None and value not in ("auto", "none"):
        raise ConfigError("pretrained", f"expected 'auto' or 'none', not {show(value)}: a weights file is named by an "
                                        "admin or on the command line (manage.py train --set pretrained=PATH)")


def create_run(dataset: Dataset, preset: str, job: Job, *, user=None, overrides: dict | None = None,
               name: str = "") -> TrainingRun:
    """A TrainingRun (with its split, made on first use, and one FoldRun per fold) done by ``job``.
    Raises ValueError for a dataset without labelled 2.5D images, and its subclass ``presets.ConfigError``, naming
    the field, for an unknown preset, an override the preset does not allow (``preset_config``) or one the run
    would not honour (``check_run_overrides``: e.g. a test fraction other than the dataset's saved split's), or
    a weights file asked for by a user who is not an admin (:func:`check_weights_named_by`)."""
    check_weights_named_by(user, overrides)
    config = preset_config(preset, overrides)
    saved = latest_split(dataset)  # else made below from the config's settings
    check_run_overrides(config, overrides, split=None if saved is None else {
        "seed": saved.seed, "test_fraction": saved.test_fraction, "n_folds": len(saved.folds)})
    # per-gland runs crop what they need from the stored volumes; a joined run builds or refreshes its images
    # first (``training.build_run_images``, an images25d job) from the same labelled scans, so both split the
    # patients labelled now (plus, for a joined run, any with stored images only)
    usable, left_out = labelled_scans(dataset)
    labels = patient_labels(usable)
    if not is_gland_run(config):
        for r in image_rows(dataset):
            labels[r.patient] = max(labels.get(r.patient, 0), r.label)
    if not labels:
        raise ValueError(f"dataset {dataset.name!r} has no labelled scans with a stored volume and crop boxes")
    split = ensure_split(dataset, seed=int(config["seed"]), test_fraction=float(config["test_fraction"]),
                         n_folds=int(config["n_folds"]), labels=labels)
    # the run records the split it uses (made earlier, perhaps with other settings), not the preset's defaults
    config["n_folds"], config["test_fraction"] = len(split.folds), split.test_fraction
    config["left_out"] = left_out  # labelled scans this run cannot use, and why
    if is_gland_run(config):  # the viewer's lesion markers as they are now: image labels for the marked sides
        config["lesion_markers"] = marker_labels(dataset, held_out=set(split.test_patients))
    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, split=split, preset=preset, config=config, name=name,
                                         job=job, created_by=user if getattr(user, "is_authenticated", False) else None)
        run.artifacts_dir = f"runs/{run.pk}"
        run.save(update_fields=["artifacts_dir"])
        # a folder left by a deleted run that had the same id is not this run's
        shutil.rmtree(run_dir(run), ignore_errors=True)
        FoldRun.objects.bulk_create([FoldRun(run=run, fold=k) for k in range(len(split.folds))])
    return run


def cancel_run(run: TrainingRun, by=None) -> None:
    """Stop a run: its job and every fold job are cancelled (the runner's one cancel path); ``by`` the user who
    asked, named in the jobs' messages."""
    if run.job_id and run.is_active:
        request_cancel(run.job, by=by)
    run.refresh_from_db()


def promote(run: TrainingRun) -> None:
    """Make a finished, evaluated run the dataset's model for inference (one promoted run per dataset). Raises
    ValueError for a run that has not finished or has no operating value yet (every verdict would refuse it)."""
    if run.status != Job.Status.SUCCEEDED:
        raise ValueError(f"run {run.pk} is {run.status}; only a finished run can be promoted")
    if run.operating_value is None:
        raise ValueError(f"run {run.pk} has no operating value yet: evaluate it first")
    with transaction.atomic():
        lock(Dataset, run.dataset_id)  # two promotes of one dataset's runs at once: the second waits, then wins
        TrainingRun.objects.filter(dataset=run.dataset, promoted=True).exclude(pk=run.pk).update(promoted=False)
        TrainingRun.objects.filter(pk=run.pk).update(promoted=True)
    run.promoted = True


class RunUnavailable(ValueError):
    """:func:`resolve_run`'s refusal: the run named, or the promoted model looked for, cannot give verdicts.
    The API answers it as an error of the request's ``run`` field (``{"run": ["..."]}``)."""


def resolve_run(run_id: int | str | None = None, dataset: Dataset | None = None, user=None) -> TrainingRun:
    """The given run, else the dataset's (or any) promoted one; it must have finished and be evaluated.
    With ``user`` (a request), only runs of datasets the user may see count (``TrainingRun.objects.visible_to``):
    a clinician of one dataset cannot run another dataset's model. Raises RunUnavailable (a ValueError) saying
    what is missing."""
    runs = TrainingRun.objects.all() if user is None else TrainingRun.objects.visible_to(user)
    if run_id:
        run = runs.filter(pk=int(run_id)).first()
        if run is None:
            raise RunUnavailable(f"no training run {run_id}")
    else:
        run = runs.filter(promoted=True, **({"dataset": dataset} if dataset else {})).first()
        if run is None:
            where = f" for {dataset.name}" if dataset else ""
            mine = " among the datasets you are a member of" if user is not None else ""
            raise RunUnavailable(f"no promoted model{where}{mine}: a lead promotes a finished, evaluated run "
                             "(the run's page, or manage.py promote RUN), or name a run")
    if run.status != Job.Status.SUCCEEDED:
        raise RunUnavailable(f"run {run.pk} is {run.status}; only a finished run gives verdicts")
    if run.operating_value is None:
        raise RunUnavailable(f"run {run.pk} has no operating value yet: evaluate it first")
    return run


def weight_paths(run: TrainingRun) -> list[Path]:
    """The fold models' best weights, in fold order. Raises ValueError when any is missing."""
    paths = [local_path(f.weights) for f in run.folds.order_by("fold") if f.weights]
    if not paths and run.artifacts_dir:
        paths = sorted(run_dir(run).glob("fold*/best.pt"), key=lambda p: int(p.parent.name[4:]))
    missing = [str(p) for p in paths if not p.exists()]
    if not paths or missing:
        raise ValueError(f"run {run.pk} has no fold weights" + (f": missing {missing}" if missing else ""))
    return paths


def split_document(split: DatasetSplit) -> dict:
    """``{"version", "test_patients", "folds"}``: the split version a run used (pseudo ids)."""
    return {"version": split.version, "test_patients": list(split.test_patients),
            "folds": [list(f) for f in split.folds]}


def run_summary(run: TrainingRun) -> dict:
    """The ``train --json`` document; ``lesion_markers``: how many sides (of how many scans) trained on image
    labels from the viewer's lesion markers, and the markers not used with why (per-gland runs)."""
    doc = {"run": run.pk, "status": run.status,
           "split": split_document(run.split),
           "folds": [{"fold": f.fold, "best_epoch": f.best_epoch, "val_loss": f.val_loss}
                     for f in run.folds.order_by("fold")]}
    doc["left_out"] = (run.config or {}).get("left_out", [])
    markers = (run.config or {}).get("lesion_markers")
    if markers is not None:
        doc["lesion_markers"] = {k: markers.get(k) for k in ("sides", "scans", "unused")}
    return doc
