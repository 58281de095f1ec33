"""Time on the local stack: a delayed job runs at its due time, a job due later waits on a
Scheduler schedule that cancel removes, and a cron schedule made at run time fires a job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jobkit.client import Jobkit
from jobkit.models import Job, JobState
from jobkit_apps.email import SEND_WELCOME
from jobkit_tools.local import LocalStack
from jobkit_tools.local.scheduler import ScheduleFirer
from jobkit_tools.local.stack import client

from .conftest import wait_until

pytestmark = pytest.mark.e2e


def welcome(name: str) -> dict[str, str]:
    return {"to": f"{name}@example.com", "name": "Ada"}


def succeeded(producer: Jobkit, job_id: str, timeout: float) -> Job:
    def done() -> Job | None:
        job = producer.get_job(job_id)
        return job if job is not None and job.state.finished else None

    job: Job = wait_until(done, timeout, what=f"job {job_id} to finish")
    assert job.state is JobState.SUCCEEDED, job.error
    return job


def test_a_delayed_job_runs_at_its_due_time(producer: Jobkit) -> None:
    # Given a welcome email enqueued to run 3 s from now
    job_id = f"delayed-{uuid.uuid4().hex[:8]}"
    job = producer.enqueue(SEND_WELCOME, welcome(job_id), job_id=job_id, delay=3)
    assert job.state is JobState.SCHEDULED and job.run_at is not None

    # When the stack runs it
    done = succeeded(producer, job_id, timeout=30)

    # Then it started at its due time, not before, and soon after (typically 1-3 s here: the
    # event source mapping's one-second batching window, and moto's long poll, which notices a
    # delayed message within a second of it becoming visible)
    assert done.started_at is not None
    late = (done.started_at - job.run_at).total_seconds()
    print(f"\ndelayed job started {late:.3f} s after its due time")
    assert late >= 0
    assert late < 10  # not a benchmark: it is not waiting on a window or a visibility timeout


def test_a_job_due_later_waits_on_a_schedule_that_cancel_removes(
    jobkit_stack: LocalStack, producer: Jobkit
) -> None:
    scheduler = client("scheduler", jobkit_stack.endpoint_url)
    group = jobkit_stack.deployment.outputs["ScheduleGroupName"]

    def schedule_names() -> list[str]:
        return [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]

    # Given a job due in 20 minutes (beyond SQS's 15-minute delay)
    job_id = f"later-{uuid.uuid4().hex[:8]}"
    before = set(schedule_names())
    run_at = datetime.now(UTC) + timedelta(minutes=20)
    job = producer.enqueue(SEND_WELCOME, welcome(job_id), job_id=job_id, run_at=run_at)

    # Then it is scheduled on a one-time Scheduler schedule of the stack's group
    assert job.state is JobState.SCHEDULED
    (name,) = set(schedule_names()) - before
    assert scheduler.get_schedule(Name=name, GroupName=group)["ScheduleExpression"].startswith(
        "at("
    )

    # When it is cancelled, its schedule is gone and the job will never run
    assert producer.cancel(job_id).state is JobState.CANCELLED
    assert name not in schedule_names()


def test_a_cron_schedule_made_at_run_time_runs_a_job_per_fire(
    jobkit_stack: LocalStack, producer: Jobkit
) -> None:
    # Given a schedule made at run time that fires every minute
    name = f"every-minute-{uuid.uuid4().hex[:6]}"
    made = producer.schedule(name, "cron(* * * * ? *)", SEND_WELCOME, welcome(name))
    assert made.next_run is not None
    try:
        # When its next run comes (a firer looking at the stack's schedules at that moment,
        # rather than this test waiting for the minute: the stack's own firer does the same)
        at_the_run = made.next_run + timedelta(seconds=1)
        firer = ScheduleFirer(jobkit_stack.endpoint_url, window_seconds=0, now=lambda: at_the_run)
        assert firer.tick() >= 1

        # Then that run's job, named by the scheduled time, ran and succeeded
        succeeded(producer, made.job_id(made.next_run), timeout=30)
    finally:
        producer.delete_schedule(name)
