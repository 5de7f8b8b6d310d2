"""Small factories for the rows most tests need: jobs, datasets with members, series, boxes and training runs.

Real files (CT volumes, DICOM, weights) come from the fixtures in ``tests/plugins``; these only make rows.
"""
from __future__ import annotations

import json

from collections.abc import Iterable, Sequence

from django.utils import timezone

from adrenal_site.jobs.models import Job
from annotations.models import CropBox, Dataset, Patient, Series, Study
from annotations.services.boxes import save_box
from inference.models import DatasetSplit, FoldRun, TrainingRun


def make_job(kind: str = "selftest", status: str = Job.Status.SUCCEEDED, *, task_name: str = "jobs.selftest_cpu",
             queue: str = "cpu", parent: Job | None = None, **fields) -> Job:
    """A Job row in ``status`` (finished ones get ``finished_at``)."""
    if status in Job.FINISHED:
        fields.setdefault("finished_at", timezone.now())
    return Job.objects.create(kind=kind, task_name=task_name, queue=queue, status=status, parent=parent, **fields)


def make_dataset(name: str = "ds", members: Iterable = (), **fields) -> Dataset:
    dataset = Dataset.objects.create(name=name, **fields)
    dataset.members.add(*members)
    return dataset


def make_series(dataset: Dataset, patient: str = "P000", *, study_uid: str | None = None,
                series_uid: str | None = None, **fields) -> Series:
    """A scan row (no volume) of a patient of ``dataset``."""
    p, _ = Patient.objects.get_or_create(dataset=dataset, pseudo_id=patient)
    study, _ = Study.objects.get_or_create(patient=p, study_uid=study_uid or f"1.2.826.0.9.{p.pk}")
    fields.setdefault("modality", "CT")
    return Series.objects.create(study=study, series_uid=series_uid or f"{study.study_uid}.{study.series.count() + 1}",
                                 **fields)


def make_box(series: Series, side: str, lps_min: Sequence[float], lps_max: Sequence[float], *,
             status: str = CropBox.Status.CONFIRMED, **kw) -> CropBox:
    """A box saved the one way boxes are saved (the series needs a volume)."""
    return save_box(series, side, lps_min, lps_max, status=status, **kw)


def make_split(dataset: Dataset, test_patients: Sequence[str] = (), folds: Sequence[Sequence[str]] = ((), ()),
               **fields) -> DatasetSplit:
    return DatasetSplit.objects.create(dataset=dataset, test_patients=list(test_patients),
                                       folds=[list(f) for f in folds], **fields)


def make_run(dataset: Dataset, split: DatasetSplit | None = None, *, status: str = Job.Status.SUCCEEDED,
             preset: str = "tiny", config: dict | None = None, fold_weights: Sequence[str] | None = None,
             fold_fields: dict | None = None, **fields) -> TrainingRun:
    """A TrainingRun whose train job is in ``status``, with one FoldRun per fold of the split (their jobs in
    the same state); ``fold_weights`` gives each fold's weights path relative to MEDIA_ROOT."""
    split = split or make_split(dataset)
    job = make_job("train", status, task_name="inference.tasks.train_run_job", dataset_id=dataset.pk)
    run = TrainingRun.objects.create(dataset=dataset, split=split, preset=preset, config=config or {"preset": preset},
                                     job=job, **fields)
    if not run.artifacts_dir:
        run.artifacts_dir = f"runs/{run.pk}"
        run.save(update_fields=["artifacts_dir"])
    job.params = {"run_id": run.pk}
    job.save(update_fields=["params"])
    for k in range(len(split.folds)):
        fold_job = make_job("train_fold", status, task_name="inference.tasks.train_fold_job", queue="gpu",
                            parent=job, params={"run_id": run.pk, "fold": k}, dataset_id=dataset.pk)
        weights = fold_weights[k] if fold_weights else ""
        FoldRun.objects.create(run=run, fold=k, job=fold_job, weights=weights, **(fold_fields or {}))
    return run


def make_promoted_tiny_run(dataset: Dataset, config: dict, *, bias: float | None = None, seed: int = 0,
                           acquisition: dict | None = None, **fields) -> TrainingRun:
    """A finished, evaluated, promoted 2-fold run of the tests' small CNN (``tiny_cnn``) with ``config``, each
    fold's weights saved in the storage (``runs/<id>/fold<k>/best.pt``, where a worker subprocess finds them).
    ``bias`` sets the output bias of the last linear layer (high: every image flagged); the model's quality
    is not the tests' to judge. ``acquisition`` is the train-val voxel-size range aggregation would have recorded
    (``inference.ml.acquisition.acquisition_range``; None: none, as a run made before ranges were recorded).
    ``fields`` go to the run (default: operating value 0.5, version 1)."""
    import torch

    from adrenal_site.storage import local_path
    from inference.ml.networks import build_model

    run = make_run(dataset, make_split(dataset, folds=[[], []]), config=config,
                   **{"operating_value": 0.5, "objective": "accuracy", "promoted": True, "version": 1, **fields})
    torch.manual_seed(seed)
    for fold in run.folds.all():
        fold.weights = f"runs/{run.pk}/fold{fold.fold}/best.pt"
        fold.save(update_fields=["weights"])
        path = local_path(fold.weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = build_model("tiny_cnn")[0]
        if bias is not None:
            with torch.no_grad():
                [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].bias.fill_(bias)
        torch.save(model.state_dict(), path)
    if acquisition is not None:
        from inference.ml.atomic import write_text
        from inference.services.runs import ACQUISITION_FILE, run_dir

        write_text(run_dir(run) / ACQUISITION_FILE, json.dumps(acquisition))
    return run


def set_status(record, status: str) -> None:
    """Put a job-backed record (a run, a fold, a prediction) into ``status`` through its job."""
    Job.objects.filter(pk=record.job_id).update(status=status, finished_at=timezone.now()
                                                if status in Job.FINISHED else None)
    record.refresh_from_db()
