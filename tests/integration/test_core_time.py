"""Delayed and timed jobs, early deliveries, and cancellation (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from jobkit import EnqueueRequest, InvalidStateError, JobNotFoundError, JobState
from jobkit import worker as worker_module
from jobkit.client import Jobkit
from tests.conftest import Stack

from .test_core_support import ECHO, Runs, deliver, make_worker, payload, receive_now

GROUP = "jobkit-test"
ROLE = "arn:aws:iam::123456789012:role/scheduler"


@pytest.fixture
def timed(stack: Stack) -> Iterator[Jobkit]:
    boto3.client("scheduler").create_schedule_group(Name=GROUP)
    settings = stack.settings.model_copy(
        update={"schedule_group": GROUP, "scheduler_role_arn": ROLE}
    )
    yield Jobkit(settings)


def schedules() -> list[dict[str, Any]]:
    scheduler = boto3.client("scheduler")
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]]
    return [scheduler.get_schedule(Name=n, GroupName=GROUP) for n in names]


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


def test_an_early_delivery_is_hidden_until_due_without_spending_an_attempt(
    stack: Stack, timed: Jobkit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job due in an hour whose schedule fired early (its input sent to the queue)
    timed.enqueue(ECHO, payload(2), job_id="early", delay=timedelta(hours=1))
    (schedule,) = schedules()
    boto3.client("sqs").send_message(
        QueueUrl=stack.queue_url, MessageBody=schedule["Target"]["Input"]
    )
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the worker receives it before it is due
    (message,) = receive_now(stack)
    failed = deliver(stack, worker, [message])
    # Then it is handed back hidden for the rest of the wait, not run, no attempt spent
    assert failed == [message["MessageId"]]
    assert runs.calls == []
    job = timed.get_job("early")
    assert job is not None and job.state == JobState.SCHEDULED and job.attempts == 0
    assert receive_now(stack) == []
    # When it comes back once it is due
    later = worker_module.utcnow() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(worker_module, "utcnow", lambda: later)
    boto3.client("sqs").change_message_visibility(
        QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    (again,) = receive_now(stack)
    assert deliver(stack, worker, [again]) == []
    # Then it runs once, as attempt 1
    assert runs.calls == [(2, "early", 1)]
    done = timed.get_job("early")
    assert done is not None and done.state == JobState.SUCCEEDED and done.attempts == 1


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
