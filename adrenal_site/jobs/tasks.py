"""A self-test job: walks through progress steps (and can fail on purpose), so an admin can
check from the browser or API that workers on each queue are alive and reporting."""
from __future__ import annotations

import time

from .models import Job
from .runner import Progress, job_task


def _selftest(job: Job, steps: int = 3, delay: float = 0.2, fail: bool = False) -> dict:
    progress = Progress(job)
    for step in range(steps):
        time.sleep(delay)
        progress(100.0 * (step + 1) / (steps + 1), f"step {step + 1} of {steps}")
    if fail:
        raise RuntimeError("self-test asked to fail")
    return {"steps": steps}


selftest_cpu = job_task("selftest", queue="cpu", name="jobs.selftest_cpu")(_selftest)
selftest_gpu = job_task("selftest", queue="gpu", name="jobs.selftest_gpu")(_selftest)
