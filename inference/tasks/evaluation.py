"""The evaluation job (cpu queue): evaluate a run on its test patients and store an Evaluation."""
from __future__ import annotations

from adrenal_site.jobs.runner import Progress, job_task


@job_task(queue="cpu")
def evaluate_run_job(job, run_id: int, objective: str | None = None, top_k: int = 5) -> dict:
    """Idempotent: a re-delivered job adds one more Evaluation row of the same (seeded) result."""
    from inference.evaluation import evaluate_run
    from inference.models import TrainingRun

    run = TrainingRun.objects.get(pk=run_id)
    evaluation = evaluate_run(run, objective, top_k=top_k, progress=Progress(job))
    return {"evaluation": evaluation.pk, "operating_value": evaluation.operating_value,
            "objective": evaluation.objective}
