"""Inference's jobs, in pipeline order: thin ``@job_task`` wrappers around ``inference.services`` and the
``start_*`` functions that queue them. From a stored scan to a verdict:

1. ``images25d`` (cpu): 2.5D images of a dataset's scans from their boxes (``services.images``); a box change
   queues a rebuild of its scan (``inference.signals``).
2. ``train`` (cpu) writes the run's start and fans out one ``train_fold`` (gpu) per fold, joined by
   ``train_aggregate`` (gpu) into out-of-fold and test predictions and a model version
   (``services.training``); a joined run first builds or refreshes its 2.5D images in a child
   ``train_images`` job, whose continuation ``train_folds`` queues the folds; then
3. ``evaluate`` (cpu) chooses the operating value on out-of-fold scans and scores the test patients
   (``services.evaluation``), and promotes the run when it asked for that (``services.runs.promote``).
4. ``predict`` (gpu) judges a scan or a submitted study with the promoted model (``services.prediction``);
   ``judge_dataset`` (gpu) judges every scan of a dataset in one job, skipping those judged by the same model.
5. The DICOM node (``services.dicom_node``): ``dicom_study`` (cpu) imports a study the PACS sent and queues a
   ``predict`` per scan, joined by ``dicom_answer`` (cpu), which makes each verdict's SR and key images and
   sends them to the PACS; ``dicom_send`` (cpu) retries deliveries the listener finds due.

``demo_pipeline`` (cpu) runs proposals, step 1 and step 2 for the demo dataset (``services.demo``). The import
and the box proposals before step 1 are ``annotations.tasks``.
"""
from __future__ import annotations

from pathlib import Path

from django.db import transaction

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import JobCancelled, Progress, enqueue, job_task
from adrenal_site.locking import lock
from adrenal_site.storage import local_path, storage_name
from annotations.models import Dataset, Series, dataset_of_series
from annotations.services.uploads import (
    NIFTI_SUFFIXES,
    UploadRefused,
    discard_upload,
    extract_zip,
    receive_upload,
    upload_dir,
)

from .models import Prediction, ReceivedStudy, TrainingRun
from .services import demo, evaluation, images, prediction, runs, training
from .services.dicom_node import answers, config, received, sending

# ------------------------------------------------------------------------------------------- 1. images


@job_task("images25d", queue="cpu")
def build_images_job(job: Job, dataset_id: int | None = None, series_ids: list[int] | None = None,
                     use_proposed: bool = False, image: dict | None = None) -> dict:
    """Build the 2.5D images of a dataset's scans (or of ``series_ids``); one bad scan never stops the rest."""
    qs = Series.objects.all()
    if dataset_id is not None:
        qs = qs.filter(study__patient__dataset_id=dataset_id)
    if series_ids is not None:
        qs = qs.filter(pk__in=series_ids)
    return images.build_many(qs, image, use_proposed, progress=Progress(job))


def start_images(*, dataset: Dataset | None = None, series_ids: list[int] | None = None,
                 use_proposed: bool = False, user=None) -> Job:
    return enqueue(build_images_job, user=user, params={"dataset_id": dataset.pk if dataset else None,
                                                        "series_ids": series_ids, "use_proposed": use_proposed},
                   dataset=dataset or dataset_of_series(series_ids or []))


# ------------------------------------------------------------------------------------------- 2. training


@job_task("train", queue="cpu")
def train_run_job(job: Job, run_id: int) -> dict:
    """Save the run's configuration and initial weights once; then queue the fold jobs not queued yet, or, for
    a joined run, first its ``train_images`` child, whose continuation ``train_folds`` queues them. The job
    then waits for its children and for their join (``train_aggregate``)."""
    run = TrainingRun.objects.get(pk=run_id)
    training.prepare_run(run)
    if training.needs_images(run):
        with transaction.atomic():
            if not Job.objects.filter(parent=job, kind__in=("images25d", "train_folds")).exists():
                enqueue(train_images_job, params={"run_id": run.pk}, user=job.created_by, parent=job,
                        then=train_folds_job)
        Progress(job)(2.0, "building or refreshing the 2.5D images of the labelled scans")
        return {"run": run.pk}
    n = _queue_folds(run, job)
    Progress(job)(5.0, f"{n} folds queued")
    return {"run": run.pk}


def _queue_folds(run: TrainingRun, parent: Job) -> int:
    """Queue each fold of ``run`` not queued yet as a child of the run's job ``parent``; returns the count."""
    with transaction.atomic():
        for fold in run.folds.select_for_update().filter(job__isnull=True):
            fold.job = enqueue(train_fold_job, params={"run_id": run.pk, "fold": fold.fold},
                               user=parent.created_by, parent=parent)
            fold.save(update_fields=["job"])
    return run.folds.count()


@job_task("images25d", queue="cpu")
def train_images_job(job: Job, run_id: int) -> dict:
    """A joined run's 2.5D images: built where missing, rebuilt where their boxes or crop settings changed,
    kept where current (``services.training.build_run_images``). Its continuation ``train_folds`` follows."""
    run = TrainingRun.objects.select_related("dataset").get(pk=run_id)
    return training.build_run_images(run, progress=Progress(job))


@job_task("train_folds", queue="cpu")
def train_folds_job(job: Job, run_id: int) -> dict:
    """After ``train_images``: queue the run's folds as children of the run's job (which then joins them)."""
    run = TrainingRun.objects.select_related("job").get(pk=run_id)
    if run.job is None:
        raise ValueError(f"run {run.pk} has no job to queue its folds under")
    if run.job.cancel_requested:
        raise JobCancelled(f"run {run.pk} cancelled")
    n = _queue_folds(run, run.job)
    Progress(job)(100.0, f"{n} folds queued")
    return {"run": run.pk, "folds": n}


@job_task("train_fold", queue="gpu")
def train_fold_job(job: Job, run_id: int, fold: int) -> dict:
    """Train one fold, resuming from its last finished epoch when it was interrupted."""
    run = TrainingRun.objects.select_related("split", "dataset", "job").get(pk=run_id)
    if run.job is not None and run.job.cancel_requested:
        raise JobCancelled(f"run {run.pk} cancelled")
    return training.train_one_fold(run, fold, Progress(job))


@job_task("train_aggregate", queue="gpu")
def aggregate_run_job(job: Job, run_id: int) -> dict:
    """Join the folds: out-of-fold and test predictions, the run's model version."""
    run = TrainingRun.objects.select_related("split", "dataset").get(pk=run_id)
    return training.aggregate_run(run, Progress(job))


def start_run(dataset: Dataset, preset: str, user=None, overrides: dict | None = None, name: str = "") -> TrainingRun:
    """Queue a training run: ``train`` → ``train_fold`` × folds → ``train_aggregate``, then ``evaluate``.
    Raises ValueError (unknown preset, no labelled 2.5D images)."""
    with transaction.atomic():
        job = enqueue(train_run_job, user=user, join=aggregate_run_job, then=evaluate_run_job, dataset=dataset)
        run = runs.create_run(dataset, preset, job, user=user, overrides=overrides, name=name)
        job.params = {"run_id": run.pk}
        job.save(update_fields=["params"])
    return run


# ------------------------------------------------------------------------------------------- 3. evaluation


@job_task("evaluate", queue="cpu")
def evaluate_run_job(job: Job, run_id: int, objective: str | None = None, top_k: int = 5) -> dict:
    """Evaluate a finished run; promote it when it asked for that (the demo's run) and none is promoted.
    Idempotent: the Evaluation is keyed by this job, so a re-delivery rewrites it (the same seeded result)."""
    run = TrainingRun.objects.get(pk=run_id)
    result = evaluation.evaluate_run(run, objective, top_k=top_k, progress=Progress(job), job=job)
    if run.config.get("auto_promote") and not TrainingRun.objects.filter(dataset=run.dataset, promoted=True).exists():
        runs.promote(run)
    return {"evaluation": result.pk, "operating_value": result.operating_value, "objective": result.objective}


def start_evaluation(run: TrainingRun, objective: str, user=None) -> Job:
    return enqueue(evaluate_run_job, params={"run_id": run.pk, "objective": objective}, user=user,
                   dataset=run.dataset_id)


# ------------------------------------------------------------------------------------------- 4. verdicts


@job_task("predict", queue="gpu")
def predict_job(job: Job, run_id: int, series_id: int | None = None, path: str | None = None,
                dataset_id: int | None = None) -> dict:
    """Judge an imported series, or an uploaded study (``path``: its storage name, resolved on this host;
    extracted here, removed when done). Idempotent: the Prediction is keyed by this job, so a re-delivery
    updates it."""
    progress = Progress(job)
    run = TrainingRun.objects.get(pk=run_id)
    if series_id is not None:
        series = Series.objects.select_related("study__patient__dataset").get(pk=series_id)
        p = prediction.predict_series(series, run, job=job, user=job.created_by, progress=progress)
        return {"prediction": p.pk, "verdict": p.verdict, "probability": p.probability, "reason": p.reason}
    if not path:
        raise ValueError("a predict job needs series_id or path")
    dataset = Dataset.objects.filter(pk=dataset_id).first() if dataset_id else None
    upload = local_path(path)
    try:
        study = upload
        if upload.suffix == ".zip":
            progress(2, "extracting the upload")
            study = extract_zip(upload, upload_dir(job.pk) / "files")
        return prediction.predict_path(study, run, job=job, user=job.created_by, dataset=dataset, progress=progress,
                                       source=upload.name)
    finally:  # also done on any end of the job (annotations.signals.remove_job_upload): cancel, worker loss
        discard_upload(job.pk, job.params)


def submit_prediction(user, *, series_id=None, run_id=None, upload=None, dataset_id=None, send: bool = True) -> Job:
    """Queue a verdict job for an imported series or an uploaded file (NIfTI, or a zip of a DICOM series,
    streamed to disk under ``ADRENAL_MAX_UPLOAD_BYTES`` into the shared storage and checked before it is queued;
    the job names it by its storage name). ``send=False`` only makes the Job row (``run_now`` or ``send_job``
    later). Raises ValueError, ``runs.RunUnavailable`` (the run), ``UploadRefused`` (the file),
    ``Series.DoesNotExist`` or ``Dataset.DoesNotExist``, each naming what it refused."""
    datasets = Dataset.objects.visible_to(user)
    if series_id:  # a scan of the user's datasets, or one they submitted (then judged as an upload would be)
        series = Series.objects.visible_to(user).select_related("study__patient__dataset").get(pk=int(series_id))
        own = datasets.filter(pk=series.study.patient.dataset_id).exists()
        run = runs.resolve_run(run_id, series.study.patient.dataset if own else None, user=user)
        # a scan the user sees only as its submitter gives a job of no dataset: theirs, not the dataset's members'
        return enqueue(predict_job, params={"series_id": series.pk, "run_id": run.pk}, user=user, send=send,
                       dataset=series.study.patient.dataset_id if own else None)
    if upload is None:
        raise ValueError("send a series id or a file")
    dataset = datasets.filter(pk=dataset_id).first() if dataset_id else None
    if dataset_id and dataset is None:
        raise Dataset.DoesNotExist(f"no dataset {dataset_id} you may see")
    run = runs.resolve_run(run_id, dataset, user=user)
    name = Path(getattr(upload, "name", "") or "upload").name
    if not name.lower().endswith((".zip", *NIFTI_SUFFIXES)):
        raise UploadRefused(f"{name}: upload a .zip of a DICOM series or a NIfTI scan (.nii or .nii.gz)")
    target = receive_upload(upload)  # the zip or NIfTI checked (check_zip, check_nifti) before anything is queued
    params = {"path": storage_name(target), "run_id": run.pk, "dataset_id": dataset.pk if dataset else None}
    return enqueue(predict_job, params=params, user=user, send=send, dataset=dataset)


@job_task("judge_dataset", queue="gpu")
def judge_dataset_job(job: Job, dataset_id: int, run_id: int, force: bool = False) -> dict:
    """Judge every scan of a dataset with one model, in this one job (``services.prediction.judge_dataset``):
    scans judged before by the same run are skipped unless ``force``."""
    dataset = Dataset.objects.get(pk=dataset_id)
    run = TrainingRun.objects.get(pk=run_id)
    return prediction.judge_dataset(dataset, run, force=force, job=job, user=job.created_by, progress=Progress(job))


class JudgingBusy(ValueError):
    """Another model's (or a non-forced) "judge every scan" job is queued or running for the dataset."""

    def __init__(self, message: str, job: Job):
        super().__init__(message)
        self.job = job


def start_judge_dataset(dataset: Dataset, user=None, *, run_id: int | None = None, force: bool = False) -> Job:
    """Queue "judge every scan of this dataset" with its promoted model (or ``run_id``). One at a time per
    dataset: while one is queued or running, that job is returned instead of a second when it does what was
    asked (the same model, forced if ``force``); otherwise :class:`JudgingBusy` names it. Raises ValueError
    (no promoted, finished and evaluated model; with ``user``, a named run of a dataset that user is no member of,
    as for one verdict: another dataset's model is refused)."""
    run = runs.resolve_run(run_id, dataset, user=user if run_id else None)
    with transaction.atomic():
        lock(Dataset, dataset.pk)  # no active job to lock yet: two clicks at once must not both queue one
        active = Job.objects.select_for_update().filter(kind="judge_dataset", status__in=Job.ACTIVE,
                                                        params__dataset_id=dataset.pk).first()
        if active is not None:
            if active.params.get("run_id") != run.pk or (force and not active.params.get("force")):
                forced = ", forced" if active.params.get("force") else ""
                raise JudgingBusy(f"job #{active.pk} is already judging every scan of {dataset.name} with model run "
                                  f"{active.params.get('run_id')}{forced} ({active.status}); wait for it or cancel "
                                  f"it, then ask again for run {run.pk}{' with force' if force else ''}", active)
            return active
        return enqueue(judge_dataset_job, params={"dataset_id": dataset.pk, "run_id": run.pk, "force": bool(force)},
                       user=user, dataset=dataset)


# ------------------------------------------------------------------------------------------- the demo


@job_task("demo_pipeline", queue="cpu")
def demo_pipeline(job: Job, dataset_id: int, preset: str = "fast", overrides: dict | None = None) -> dict:
    """Proposals, 2.5D images and a training run that promotes itself once evaluated. Idempotent: proposals
    and images skip what is unchanged; a run is started only when the dataset has none."""
    progress = Progress(job)
    dataset = Dataset.objects.get(pk=dataset_id)
    result = demo.prepare_images(dataset, progress=progress.sub(0, 95))
    run = dataset.runs.order_by("pk").first()
    if run is None:
        progress(96, f"starting a {preset} training run")
        run = start_run(dataset, preset, overrides={**(overrides or {}), "auto_promote": True}, name="demo",
                        user=job.created_by)
    return {**result, "run": run.pk}


def start_demo_pipeline(dataset: Dataset, preset: str = "fast", user=None) -> Job:
    return enqueue(demo_pipeline, params={"dataset_id": dataset.pk, "preset": preset}, user=user, dataset=dataset)


# ------------------------------------------------------------------------------------------- 5. the DICOM node


@job_task("dicom_study", queue="cpu")
def dicom_study_job(job: Job, delivery_id: int) -> dict:
    """A complete delivery from the PACS: imported into its dataset (boxes proposed), then, when it is to be
    judged, one ``predict`` job per scan not answered before, with the promoted model, as children joined by
    ``dicom_answer``. Idempotent: the import is done once and a re-delivery queues no second verdict."""
    delivery = ReceivedStudy.objects.get(pk=delivery_id)
    progress = Progress(job)
    received.import_delivery(delivery, job=job, user=job.created_by, progress=progress.sub(0, 90))
    if not delivery.judge:
        return {"delivery": delivery.pk, "notes": delivery.notes}
    scans, notes = received.scans_to_judge(delivery)
    if not scans:
        message = "; ".join(notes) or f"no usable CT scan ({delivery.notes})"
        ReceivedStudy.objects.filter(pk=delivery.pk).update(notes=message[:500])
        progress(95, message)
        return {"delivery": delivery.pk, "scans": [], "notes": message}
    run = runs.resolve_run()
    with transaction.atomic():
        queued = {c.params.get("series_id") for c in Job.objects.filter(parent=job, kind="predict")}
        for series in scans:
            if series.pk not in queued:
                enqueue(predict_job, params={"series_id": series.pk, "run_id": run.pk}, user=job.created_by,
                        parent=job, dataset=dataset_of_series([series.pk]))
    progress(95, f"{len(scans)} scan(s) queued for a verdict with run {run.pk}")
    return {"delivery": delivery.pk, "scans": [s.pk for s in scans], "run": run.pk}


@job_task("dicom_answer", queue="cpu")
def dicom_answer_job(job: Job, delivery_id: int) -> dict:
    """The join of a delivery's verdicts: each Prediction's SR and key images made, then sent to the results
    destination (a failed delivery is retried by ``dicom_send``, see ``services.dicom_node.scheduler``)."""
    delivery = ReceivedStudy.objects.get(pk=delivery_id)
    predictions = Prediction.objects.filter(job__parent_id=job.parent_id).select_related("series__study", "run") \
        if job.parent_id else Prediction.objects.none()
    destination = config.results_destination(delivery.calling_aet)
    made, counts, errors = 0, {"delivered": 0, "failed": 0}, []
    for p in predictions:
        try:
            results = answers.make_results(p)
        except Exception as exc:  # noqa: BLE001 - one scan's answer never stops the others
            errors.append(f"prediction {p.pk}: {exc}")
            continue
        made += len(results)
        if destination is not None:
            sent = sending.deliver(sending.queue_sends(results, destination, job=job), job=job)
            counts = {k: counts[k] + sent[k] for k in counts}
    Progress(job)(100, f"{made} result object(s) made; {counts['delivered']} delivered, {counts['failed']} to retry"
                  + ("" if destination else "; no results destination configured"))
    if errors:
        raise RuntimeError("no DICOM results for " + "; ".join(errors))
    return {"delivery": delivery.pk, "results": made, **counts, "destination": str(destination or "")}


@job_task("dicom_send", queue="cpu")
def dicom_send_job(job: Job, prediction_id: int) -> dict:
    """Try the prediction's due deliveries once more."""
    p = Prediction.objects.get(pk=prediction_id)
    return sending.deliver(sending.pending_sends(p), job=job)


def start_dicom_study(delivery: ReceivedStudy, user=None, send: bool = True) -> Job:
    """Queue a closed delivery's job (with its answer as the join when it is to be judged); ``send=False`` only
    makes the row, to run it in this process (``run_now``; only without verdicts, which need a worker)."""
    return enqueue(dicom_study_job, params={"delivery_id": delivery.pk}, user=user,
                   join=dicom_answer_job if delivery.judge else None, send=send)


def start_dicom_send(prediction_id: int, user=None) -> Job:
    dataset = Prediction.objects.filter(pk=prediction_id).values_list("series__study__patient__dataset_id",
                                                                      flat=True).first()
    return enqueue(dicom_send_job, params={"prediction_id": prediction_id}, user=user, dataset=dataset)
