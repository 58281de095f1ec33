"""Delayed and timed jobs, early deliveries, leases and cancellation (moto; the tests that need
time to pass run on the virtual clock of jobkit_tools.testing)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobkit import EnqueueRequest, InvalidStateError, JobNotFoundError, JobState
from jobkit.client import Jobkit
from jobkit.store import JobLog
from jobkit.worker import JobContext, Worker
from jobkit_tools.testing import DEFAULT_START, Harness
from tests.conftest import SCHEDULER_ROLE, Stack, scheduling_client, stored_schedules

from .test_core_support import (
    ECHO,
    OTHER,
    EchoPayload,
    Runs,
    deliver,
    make_worker,
    payload,
    receive_now,
    record_calls,
)

GROUP = "jobkit-test"
ROLE = SCHEDULER_ROLE


@pytest.fixture
def timed(stack: Stack) -> Jobkit:
    return scheduling_client(stack, GROUP, "schedule_group")


def schedules() -> list[dict[str, Any]]:
    return stored_schedules(GROUP)


def test_a_job_due_in_an_hour_gets_a_one_time_schedule_and_no_message(
    stack: Stack, timed: Jobkit
) -> None:
    # When a job is enqueued to run in an hour
    job = timed.enqueue(ECHO, payload(1), job_id="later", delay=timedelta(hours=1))
    # Then the log has it scheduled with its due time, and nothing is on the queue yet
    stored = timed.get_job("later")
    assert stored is not None and stored.state == JobState.SCHEDULED
    assert stored.run_at is not None and job.run_at is not None
    assert receive_now(stack) == []
    # And Scheduler will send its envelope to the queue a minute early, then delete itself
    (schedule,) = schedules()
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["Arn"].endswith(":email")
    assert schedule["Target"]["RoleArn"] == ROLE
    assert schedule["Target"]["DeadLetterConfig"]["Arn"].endswith(":email-dlq")
    fire_at = datetime.strptime(schedule["ScheduleExpression"], "at(%Y-%m-%dT%H:%M:%S)")
    due = stored.run_at.replace(microsecond=0, tzinfo=None)
    assert timedelta(seconds=59) <= due - fire_at <= timedelta(seconds=61)
    envelope = json.loads(schedule["Target"]["Input"])
    assert envelope["id"] == "later"
    assert envelope["not_before"]


def test_a_short_delay_waits_in_sqs_and_the_job_is_scheduled(stack: Stack, timed: Jobkit) -> None:
    timed.enqueue(ECHO, payload(), job_id="soon", delay=30)
    stored = timed.get_job("soon")
    assert stored is not None and stored.state == JobState.SCHEDULED
    assert receive_now(stack) == []  # DelaySeconds holds it back
    assert schedules() == []


@dataclass
class Timed:
    """A worker of queue "email" for ECHO and OTHER that notes when each attempt ran."""

    runs: Runs = field(default_factory=Runs)
    at: list[datetime] = field(default_factory=list)

    def __call__(self, p: EchoPayload, ctx: JobContext) -> dict[str, Any]:
        self.at.append(datetime.now(UTC))
        return self.runs(p, ctx)


@pytest.fixture
def timed_runs(jobkit_harness: Harness) -> Timed:
    timed = Timed()
    worker = Worker("email")
    worker.processor(ECHO)(timed)
    worker.processor(OTHER)(timed)
    jobkit_harness.register(worker)
    return timed


def test_a_short_delay_runs_when_due_and_not_before(
    jobkit_harness: Harness, timed_runs: Timed
) -> None:
    # Given a job due in 30 s (SQS DelaySeconds)
    job = jobkit_harness.client.enqueue(ECHO, payload(3), job_id="soon", delay=30)
    assert job.run_at is not None
    # When 29 s pass, it has not run
    jobkit_harness.advance(29)
    assert timed_runs.runs.calls == []
    # When the 30th second passes, it runs once, within a second of its due time
    jobkit_harness.advance(1)
    assert timed_runs.runs.calls == [(3, "soon", 1)]
    assert timedelta(0) <= timed_runs.at[0] - job.run_at < timedelta(seconds=1)


def test_an_early_delivery_is_hidden_until_due_without_spending_an_attempt(
    jobkit_harness: Harness, timed_runs: Timed
) -> None:
    # Given a job due in an hour: its schedule fires a minute early
    job = jobkit_harness.client.enqueue(ECHO, payload(2), job_id="early", delay=timedelta(hours=1))
    assert job.run_at is not None
    calls = record_calls()
    # When the worker has received it, half a minute before it is due
    jobkit_harness.run_until(job.run_at - timedelta(seconds=30))
    # Then it was handed back hidden for the rest of the wait, not run, no attempt spent
    assert [c["VisibilityTimeout"] for c in calls.params["ChangeMessageVisibility"]] == [60]
    assert timed_runs.runs.calls == []
    held = jobkit_harness.job("early")
    assert (held.state, held.attempts) == (JobState.SCHEDULED, 0)
    # When it comes back once it is due, it runs once, as attempt 1, on time
    jobkit_harness.run_until(job.run_at)
    assert timed_runs.runs.calls == [(2, "early", 1)]
    assert timedelta(0) <= timed_runs.at[0] - job.run_at < timedelta(seconds=1)
    done = jobkit_harness.job("early")
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1)


def test_a_run_at_in_the_past_runs_now(jobkit_harness: Harness, timed_runs: Timed) -> None:
    # Given a job whose run time has passed
    jobkit_harness.client.enqueue(
        ECHO, payload(), job_id="late", run_at=jobkit_harness.now - timedelta(hours=1)
    )
    # When the stack runs without letting time pass, it runs at once
    jobkit_harness.advance(0)
    assert timed_runs.at == [DEFAULT_START]
    assert jobkit_harness.job("late").state == JobState.SUCCEEDED


def test_a_crashed_attempt_is_taken_over_when_its_lease_ends(
    jobkit_harness: Harness, timed_runs: Timed
) -> None:
    # Given a job whose first attempt claimed it and died (ECHO's 5 s lease)
    jobkit_harness.client.enqueue(ECHO, payload(), job_id="orphan")
    crashed = JobLog(jobkit_harness.settings.table).claim("orphan", ECHO.timeout)
    assert crashed.job is not None and crashed.job.attempts == 1
    # When its message is delivered while the lease holds, and again after a minute
    jobkit_harness.advance(60)
    # Then it waited for the lease, and ran once as attempt 2 just after it ended
    assert timed_runs.runs.calls == [(0, "orphan", 2)]
    assert timedelta(seconds=5) < timed_runs.at[0] - DEFAULT_START <= timedelta(seconds=7)
    done = jobkit_harness.job("orphan")
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)


def test_cancel_a_scheduled_job_deletes_its_schedule(stack: Stack, timed: Jobkit) -> None:
    timed.enqueue(ECHO, payload(), job_id="c1", run_at=datetime.now(UTC) + timedelta(days=2))
    assert len(schedules()) == 1
    cancelled = timed.cancel("c1")
    assert cancelled.state == JobState.CANCELLED
    assert schedules() == []
    stored = timed.get_job("c1")
    assert stored is not None and stored.state == JobState.CANCELLED
    assert [j.id for j in timed.list_jobs(state="cancelled")] == ["c1"]


def test_a_cancelled_queued_job_never_runs(stack: Stack, timed: Jobkit) -> None:
    # Given a queued job that is cancelled before a worker gets it
    timed.enqueue(ECHO, payload(), job_id="c2")
    timed.cancel("c2")
    runs = Runs()
    # When its message is delivered
    (message,) = receive_now(stack)
    # Then the worker drops it without running it
    assert deliver(stack, make_worker(stack, runs), [message]) == []
    assert runs.calls == []
    assert receive_now(stack) == []


def test_a_running_or_finished_job_cannot_be_cancelled(stack: Stack, timed: Jobkit) -> None:
    timed.enqueue(ECHO, payload(), job_id="c3")
    (message,) = receive_now(stack)
    deliver(stack, make_worker(stack, Runs()), [message])
    with pytest.raises(InvalidStateError, match="succeeded"):
        timed.cancel("c3")
    with pytest.raises(JobNotFoundError):
        timed.cancel("nope")


def test_enqueue_many_schedules_the_long_delays(stack: Stack, timed: Jobkit) -> None:
    result = timed.enqueue_many(
        [
            EnqueueRequest(ECHO, payload(1), job_id="m1"),
            EnqueueRequest(ECHO, payload(2), job_id="m2", delay=timedelta(hours=3)),
        ]
    )
    assert [o.ok for o in result.outcomes] == [True, True]
    assert len(receive_now(stack)) == 1
    assert len(schedules()) == 1
    stored = timed.get_job("m2")
    assert stored is not None and stored.state == JobState.SCHEDULED


@pytest.mark.parametrize(
    "delay", [timedelta(hours=2), timedelta(minutes=10)], ids=["scheduler", "sqs"]
)
def test_run_now_runs_a_scheduled_job_at_once_and_only_once(
    jobkit_harness: Harness, delay: timedelta
) -> None:
    # Given a job due later (through Scheduler, or waiting in SQS)
    runs = Runs()
    worker = Worker("email")
    worker.processor(ECHO)(runs)
    jobkit_harness.register(worker)
    jobkit_harness.client.enqueue(ECHO, payload(4), job_id="now-please", delay=delay)
    # When it is run now
    released = jobkit_harness.client.run_now("now-please")
    assert released.state == JobState.QUEUED
    jobkit_harness.advance(0)
    # Then it ran at once, and the old due time passes without a second run
    assert runs.calls == [(4, "now-please", 1)]
    assert jobkit_harness.job("now-please").state == JobState.SUCCEEDED
    jobkit_harness.run_until_idle()
    assert runs.calls == [(4, "now-please", 1)]
    assert jobkit_harness.dead_letters("email") == []


def test_run_now_refuses_a_job_that_is_not_scheduled(jobkit_harness: Harness) -> None:
    jobkit_harness.client.enqueue(ECHO, payload(), job_id="already-queued")
    with pytest.raises(InvalidStateError, match="only a scheduled job"):
        jobkit_harness.client.run_now("already-queued")
    with pytest.raises(JobNotFoundError):
        jobkit_harness.client.run_now("never-enqueued")
