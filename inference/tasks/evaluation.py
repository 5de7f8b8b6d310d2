"""The evaluation job (cpu queue): evaluate a run on its test patients and store an Evaluation.

A run that becomes ``succeeded`` through ``save()`` is evaluated automatically (once), so the dashboards
fill after training without anyone asking; ``queue_evaluation(run)`` does the same explicitly (e.g. from
an aggregation step that updates the status with a queryset ``update``).
"""
from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from adrenal_site.jobs.runner import Progress, job_task


@job_task(queue="cpu")
def evaluate_run_job(job, run_id: int, objective: str | None = None, top_k: int = 5) -> dict:
    """Idempotent: a re-delivered job adds one more Evaluation row of the same (seeded) result."""
    from inference.evaluation import evaluate_run
    from inference.models import TrainingRun

    run = TrainingRun.objects.get(pk=run_id)
    evaluation = evaluate_run(run, objective, top_k=top_k, progress=Progress(job))
    if run.config.get("auto_promote") and not TrainingRun.objects.filter(dataset=run.dataset, promoted=True).exists():
        from inference.training_service import promote

        promote(run)  # the demo's run: evaluated, then the dataset's model for new verdicts
    return {"evaluation": evaluation.pk, "operating_value": evaluation.operating_value,
            "objective": evaluation.objective}


def queue_evaluation(run, user=None, objective: str | None = None, *, force: bool = False):
    """Queue an evaluation of ``run`` unless one exists or is queued/running (``force`` queues anyway)."""
    from adrenal_site.jobs.models import Job
    from adrenal_site.jobs.runner import enqueue

    if not force:
        if run.evaluations.exists():
            return None
        pending = Job.objects.filter(kind="evaluate", params__run_id=run.pk, status__in=Job.ACTIVE)
        if pending.exists():
            return None
    return enqueue(evaluate_run_job, kind="evaluate",
                   params={"run_id": run.pk, "objective": objective or run.objective or "accuracy"}, user=user)


@receiver(pre_save, sender="inference.TrainingRun", dispatch_uid="h6-run-status-before")
def _remember_status(sender, instance, **kwargs) -> None:
    instance._status_before = (sender.objects.filter(pk=instance.pk).values_list("status", flat=True).first()
                               if instance.pk else None)


@receiver(post_save, sender="inference.TrainingRun", dispatch_uid="h6-run-evaluate-when-finished")
def _evaluate_when_finished(sender, instance, created, **kwargs) -> None:
    if not getattr(settings, "ADRENAL_AUTO_EVALUATE", True) or created:
        return
    if instance.status == sender.Status.SUCCEEDED and getattr(instance, "_status_before", None) not in (
            None, sender.Status.SUCCEEDED):
        queue_evaluation(instance, user=instance.created_by)
