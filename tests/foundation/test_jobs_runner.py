"""The job runner's one state machine without a worker: fan-out and join, continuation, a failing child,
cancel of a whole tree, and transitions that are refused."""
from __future__ import annotations

import pytest

from adrenal_site.jobs.models import Job
from adrenal_site.jobs.runner import _returned, enqueue, finish, request_cancel, run_now, settle
from adrenal_site.jobs.tasks import selftest_cpu, selftest_gpu
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True)  # the runner closes connections between jobs


def _parent_with_children(n: int = 2, **kw) -> tuple[Job, list[Job]]:
    parent = enqueue(selftest_cpu, params={"steps": 0}, send=False, **kw)
    Job.objects.filter(pk=parent.pk).update(status=Job.Status.RUNNING)
    parent.refresh_from_db()
    children = [enqueue(selftest_gpu, params={"steps": 0}, parent=parent, send=False) for _ in range(n)]
    _returned(parent, {"queued": n})  # the parent's own work is done: it waits for its children
    parent.refresh_from_db()
    return parent, children


def test_a_parent_waits_for_its_children_then_joins_and_continues():
    parent, children = _parent_with_children(join=selftest_cpu, then=selftest_gpu)
    assert parent.status == "running" and parent.awaiting_children
    for c in children:
        run_now(selftest_gpu, c)
    parent.refresh_from_db()
    join = parent.children.get(task_name=selftest_cpu.name)
    assert parent.status == "running" and join.status == "queued"  # the join is queued once all succeeded
    run_now(selftest_cpu, join)
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.result == join.result and not parent.awaiting_children
    then = Job.objects.filter(parent=None, task_name=selftest_gpu.name).exclude(pk=parent.pk)
    assert then.count() == 1 and then.get().params == parent.params and then.get().queue == "gpu"
    settle(parent.pk)  # settling a finished parent changes nothing
    assert then.count() == 1


def test_a_childs_continuation_is_its_sibling_and_the_parent_waits_for_it():
    parent = enqueue(selftest_cpu, params={"steps": 0}, send=False)
    Job.objects.filter(pk=parent.pk).update(status=Job.Status.RUNNING)
    parent.refresh_from_db()
    first = enqueue(selftest_gpu, params={"steps": 0}, parent=parent, send=False, then=selftest_cpu)
    _returned(parent, {})
    run_now(selftest_gpu, first)
    parent.refresh_from_db()
    then = parent.children.get(task_name=selftest_cpu.name)  # queued in the family, before the parent settled
    assert first.status == "succeeded" and then.status == "queued" and then.params == first.params
    assert parent.status == "running" and parent.awaiting_children
    run_now(selftest_cpu, then)
    parent.refresh_from_db()
    assert parent.status == "succeeded"


def test_a_failed_child_fails_the_parent_and_cancels_its_siblings():
    parent, (first, second) = _parent_with_children()
    Job.objects.filter(pk=first.pk).update(params={"steps": 0, "fail": True})
    run_now(selftest_gpu, first)
    for job in (parent, first, second):
        job.refresh_from_db()
    assert first.status == "failed"
    assert parent.status == "failed" and f"#{first.pk} failed" in parent.message
    assert second.status == "cancelled" and second.cancel_requested


def test_cancel_stops_the_tree_at_once_where_nothing_runs():
    parent, children = _parent_with_children(3)
    running = children[0]
    Job.objects.filter(pk=running.pk).update(status=Job.Status.RUNNING)
    request_cancel(parent)
    statuses = {j.pk: j.status for j in Job.objects.filter(pk__in=[parent.pk, *[c.pk for c in children]])}
    assert statuses[parent.pk] == "cancelled"
    assert [statuses[c.pk] for c in children[1:]] == ["cancelled", "cancelled"]
    assert statuses[running.pk] == "running" and Job.objects.get(pk=running.pk).cancel_requested  # stops at its next report


def test_a_cancelled_job_says_who_cancelled_it(django_user_model):
    """The message names the user who asked, on the queued jobs stopped at once, on a running one stopped at its
    next report, and on a job claimed after the request; a second request keeps the first asker."""
    from adrenal_site.jobs.runner import Progress, run_job

    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    parent, (first, second) = _parent_with_children()
    request_cancel(parent, by=alice)
    request_cancel(parent, by=bob)
    for job in (parent, first, second):
        job.refresh_from_db()
        assert job.status == "cancelled" and job.message == "cancelled by alice" and job.cancelled_by == alice

    def stops_when_asked(job, **params):
        request_cancel(job, by=bob)  # as the lead's request arriving while it runs
        Progress(job)(50, "working")
        return {}

    running = enqueue(selftest_cpu, params={"steps": 0}, send=False)
    run_job(stops_when_asked, running.pk)
    running.refresh_from_db()
    assert running.status == "cancelled" and running.message == "cancelled by bob"

    late = enqueue(selftest_cpu, params={"steps": 0}, send=False)
    Job.objects.filter(pk=late.pk).update(cancel_requested=True, cancelled_by=bob)
    run_now(selftest_cpu, late)
    late.refresh_from_db()
    assert late.status == "cancelled" and late.message == "cancelled before start by bob"

    system = enqueue(selftest_cpu, params={"steps": 0}, send=False)
    request_cancel(system)
    system.refresh_from_db()
    assert system.message == "cancelled" and system.cancelled_by is None


def test_a_continuation_queued_after_its_family_was_cancelled_stops_and_says_who_asked(django_user_model):
    """A run cancelled while its images child was finishing: the child succeeded after the request and its
    continuation (train_folds) was queued under the cancelled run's job without the request, so it ran and
    ended saying "cancelled", not who asked (README: the cancelled job and its children say "cancelled by alice")."""
    alice = django_user_model.objects.create_user("alice")
    parent = enqueue(selftest_cpu, params={"steps": 0}, send=False)
    Job.objects.filter(pk=parent.pk).update(status=Job.Status.RUNNING)
    parent.refresh_from_db()
    child = enqueue(selftest_gpu, params={"steps": 0}, parent=parent, send=False, then=selftest_cpu)
    _returned(parent, {})
    Job.objects.filter(pk=child.pk).update(status=Job.Status.RUNNING)
    request_cancel(parent, by=alice)
    finish(child, Job.Status.SUCCEEDED, message="done")  # its work ended before it reported again
    then = parent.children.get(task_name=selftest_cpu.name)
    assert then.cancel_requested and then.cancelled_by == alice
    run_now(selftest_cpu, then)
    then.refresh_from_db()
    assert then.status == "cancelled" and then.message == "cancelled before start by alice"
    free = enqueue(selftest_cpu, params={"steps": 0}, parent=enqueue(selftest_cpu, send=False), send=False)
    assert not free.cancel_requested and free.cancelled_by is None  # a family nobody stopped: as before


def test_transitions_out_of_a_finished_state_are_refused():
    job = make_job(status=Job.Status.SUCCEEDED)
    assert finish(job, Job.Status.FAILED, message="late") is False
    job.refresh_from_db()
    assert job.status == "succeeded" and job.message != "late"
    queued = make_job(status=Job.Status.QUEUED)
    assert finish(queued, Job.Status.SUCCEEDED) is False  # a queued job never succeeds without running


def test_a_finished_job_says_it_is_done_not_the_step_it_last_reported():
    """A task that returns without reporting its end must not leave a step's message ("step 2 of 2", "extracting
    the upload") on a succeeded job; one that reported its end at 100% keeps its own words."""
    job = run_now(selftest_cpu, enqueue(selftest_cpu, params={"steps": 2, "delay": 0}, send=False))
    assert job.status == "succeeded" and job.progress == 100 and job.message == "done"
    ended = make_job("selftest", status="running")
    Job.objects.filter(pk=ended.pk).update(progress=100, message="3 scans judged")
    ended.refresh_from_db()
    _returned(ended, {})
    ended.refresh_from_db()
    assert ended.status == "succeeded" and ended.message == "3 scans judged"


def test_a_job_delivered_again_runs_once_while_its_run_beats_and_at_most_max_attempts_after():
    """A second delivery of a running job whose run still beats waits (the same task delivered twice); once the
    beat stopped its run is lost: it runs again from 0 %, and after MAX_ATTEMPTS lost runs it fails saying why."""
    from datetime import timedelta

    from django.utils import timezone

    from adrenal_site.jobs.runner import MAX_ATTEMPTS, _RunningElsewhere

    alive = make_job(status=Job.Status.RUNNING, params={"steps": 0}, attempts=1, heartbeat_at=timezone.now(),
                     progress=40.0, message="step 2 of 5")
    with pytest.raises(_RunningElsewhere):
        run_now(selftest_cpu, alive)
    alive.refresh_from_db()
    assert alive.status == "running" and alive.attempts == 1 and alive.progress == 40.0

    gone = timezone.now() - timedelta(minutes=2)
    Job.objects.filter(pk=alive.pk).update(heartbeat_at=gone)
    seen = []

    def reports(job, **params):
        job.refresh_from_db()
        seen.append((job.progress, job.message))
        return {}

    from adrenal_site.jobs.runner import run_job

    run_job(reports, alive.pk)
    alive.refresh_from_db()
    assert seen == [(0.0, f"restarted (attempt 2 of {MAX_ATTEMPTS}): its previous worker was lost")]
    assert alive.status == "succeeded" and alive.attempts == 2

    dying = make_job(status=Job.Status.RUNNING, params={"steps": 0}, attempts=MAX_ATTEMPTS, heartbeat_at=gone)
    run_now(selftest_cpu, dying)
    assert dying.status == "failed" and dying.message == f"worker lost {MAX_ATTEMPTS} times; not retried"
    assert "out of memory" in dying.error and dying.attempts == MAX_ATTEMPTS


def test_a_run_whose_job_already_ended_stops_and_leaves_it_as_it_ended():
    """A late second run reporting progress on a job another run finished: the job keeps its 100 % and message
    (it showed 'succeeded' at 90 %, 'step 10 of 10'), and the late run stops there."""
    from adrenal_site.jobs.runner import Progress, run_job

    job = enqueue(selftest_cpu, params={"steps": 0}, send=False)
    after = []

    def finished_meanwhile(job, **params):
        finish(job, Job.Status.SUCCEEDED, message="3 scans judged", result={"n": 3})  # the other run ended it
        Progress(job)(90.0, "step 10 of 10")
        after.append("went on")
        return {"n": 0}

    run_job(finished_meanwhile, job.pk)
    job.refresh_from_db()
    assert after == [] and job.status == "succeeded" and job.progress == 100.0
    assert job.message == "3 scans judged" and job.result == {"n": 3}


def test_a_job_whose_object_was_deleted_meanwhile_says_so():
    """A run deleted while its job waited in the queue: the job failed "DoesNotExist: TrainingRun matching query
    does not exist."; it names what is gone and why, and is not retried."""
    from inference.tasks import aggregate_run_job
    from tests.factories import make_dataset, make_run

    run = make_run(make_dataset("deleted-meanwhile"))
    job = enqueue(aggregate_run_job, params={"run_id": run.pk}, send=False)
    run.delete()
    job = run_now(aggregate_run_job, job)
    assert job.status == "failed" and job.attempts == 1
    assert job.message == "TrainingRun not found: it was deleted while this job was queued or running"
    assert "DoesNotExist" in job.error
