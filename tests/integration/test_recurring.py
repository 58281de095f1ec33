"""Recurring jobs: cron/rate schedules made at run time, validated up front, and one job per
run even when Scheduler fires a run twice (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobkit import (
    InvalidScheduleError,
    JobState,
    JobValidationError,
    ScheduleNotFoundError,
)
from jobkit.client import Jobkit
from jobkit_tools.local.scheduler import ScheduleFirer
from tests.conftest import SCHEDULER_ROLE, Stack, scheduling_client, stored_schedules

from .test_core_support import (
    ECHO,
    Runs,
    deliver,
    make_worker,
    payload,
    receive_now,
    record_calls,
)

GROUP = "jobkit-recurring-test"
ROLE = SCHEDULER_ROLE


@pytest.fixture
def client(stack: Stack) -> Jobkit:
    return scheduling_client(stack, GROUP, "recurring_group")


def stored() -> list[dict[str, Any]]:
    return stored_schedules(GROUP)


def test_a_cron_schedule_targets_the_job_types_queue_with_a_run_time_job_id(
    client: Jobkit,
) -> None:
    # When a job type is scheduled for 09:00 on weekdays in Berlin (bare six fields)
    made = client.schedule(
        "weekday-digest", "0 9 ? * MON-FRI *", ECHO, payload(7), timezone="Europe/Berlin"
    )

    # Then Scheduler holds it in the recurring group, aimed at the job type's queue and DLQ
    (schedule,) = stored()
    assert schedule["ScheduleExpression"] == "cron(0 9 ? * MON-FRI *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    target = schedule["Target"]
    assert isinstance(target, dict)
    assert target["Arn"].endswith(":email")
    assert target["DeadLetterConfig"]["Arn"].endswith(":email-dlq")
    assert target["RoleArn"] == ROLE
    # And each run's envelope takes its id and time from the run's scheduled time
    envelope = json.loads(target["Input"])
    assert envelope["id"] == "weekday-digest@<aws.scheduler.scheduled-time>"
    assert envelope["enqueued_at"] == "<aws.scheduler.scheduled-time>"
    assert envelope["origin"] == "schedule"
    assert envelope["type"] == ECHO.name and envelope["payload"]["n"] == 7
    # And the caller sees it as jobkit reads it back, with its next run at 09:00 Berlin time
    assert made.job_type == ECHO.name and made.state == "ENABLED"
    assert made.next_run is not None
    assert made.next_run.astimezone(UTC).hour in (7, 8)  # 09:00 CEST or CET
    assert made.next_run.weekday() < 5


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 2 * * *", "six fields"),  # the Unix five-field form
        ("cron(0 9 * * MON *)", "must be '?'"),
        ("cron(0 25 * * ? *)", "hours 25 is outside 0-23"),
        ("at(2026-12-01T09:00:00)", "enqueue with run_at"),
        ("rate(1 days)", "singular unit"),
    ],
)
def test_an_invalid_expression_fails_before_anything_is_created(
    client: Jobkit, expression: str, says: str
) -> None:
    # When a schedule is made with an expression AWS would reject
    with pytest.raises(InvalidScheduleError) as raised:
        client.schedule("bad", expression, ECHO, payload())

    # Then the error says why, and no schedule exists
    assert says in str(raised.value).replace("6 fields", "six fields")
    assert stored() == []


def test_bad_names_timezones_and_payloads_fail_before_anything_is_created(client: Jobkit) -> None:
    with pytest.raises(InvalidScheduleError, match="schedule name"):
        client.schedule("no spaces please", "rate(1 hour)", ECHO, payload())
    with pytest.raises(InvalidScheduleError, match="unknown timezone"):
        client.schedule("tz", "rate(1 hour)", ECHO, payload(), timezone="Berlin")
    with pytest.raises(JobValidationError, match="to"):
        client.schedule("payload", "rate(1 hour)", ECHO, {"to": "not an address"})
    assert stored() == []


def test_the_same_name_again_updates_the_schedule(client: Jobkit) -> None:
    # Given a schedule
    client.schedule("report", "rate(1 hour)", ECHO, payload(1))

    # When it is declared again with another expression and payload
    client.schedule("report", "cron(30 6 * * ? *)", ECHO, payload(2))

    # Then there is still one, and it is the new one
    (only,) = client.list_schedules()
    assert only.expression == "cron(30 6 * * ? *)"
    assert only.payload["n"] == 2


def test_pause_resume_and_delete(client: Jobkit) -> None:
    # Given two schedules
    client.schedule("a-hourly", "rate(1 hour)", ECHO, payload())
    client.schedule("b-nightly", "cron(0 2 * * ? *)", ECHO, payload())

    # When one is paused
    paused = client.pause_schedule("a-hourly")

    # Then it is disabled with no next run, keeping its target; the other is untouched
    assert paused.state == "DISABLED" and paused.next_run is None
    assert paused.job_type == ECHO.name
    states = {s.name: s.state for s in client.list_schedules()}
    assert states == {"a-hourly": "DISABLED", "b-nightly": "ENABLED"}

    # When it is resumed, and the other deleted
    resumed = client.resume_schedule("a-hourly")
    client.delete_schedule("b-nightly")

    # Then one enabled schedule is left, and the deleted one is not found
    assert resumed.state == "ENABLED" and resumed.next_run is not None
    assert [s.name for s in client.list_schedules()] == ["a-hourly"]
    with pytest.raises(ScheduleNotFoundError):
        client.delete_schedule("b-nightly")
    with pytest.raises(ScheduleNotFoundError):
        client.pause_schedule("b-nightly")


def test_a_run_fired_twice_runs_once_under_the_runs_job_id(stack: Stack, client: Jobkit) -> None:
    # Given a schedule due every minute, and Scheduler firing one run twice
    client.schedule("every-minute", "cron(* * * * ? *)", ECHO, payload(3))
    run = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
    for _ in range(2):  # two firers, each delivering the run once
        firer = ScheduleFirer(None, window_seconds=0, now=lambda: run + timedelta(seconds=5))
        assert firer.tick() == 1

    # When the worker gets the first delivery, then the second
    runs = Runs()
    messages = receive_now(stack)
    assert len(messages) == 2
    worker = make_worker(stack, runs)
    calls = record_calls()
    deliver(stack, worker, messages[:1])
    first = dict(calls.ops)
    deliver(stack, worker, messages[1:])

    # Then the run ran once, as the job of that scheduled time, which the log now records
    run_id = f"every-minute@{run:%Y-%m-%dT%H:%M:%S}Z"
    assert [job_id for _, job_id, _ in runs.calls] == [run_id]
    # And its first delivery wrote the log twice (created claimed, then succeeded): a run is
    # known to have no entry yet, so no claim is tried first
    assert (first.get("PutItem"), first.get("UpdateItem")) == (1, 1)
    job = client.get_job(run_id)
    assert job is not None and job.state is JobState.SUCCEEDED


def test_without_a_recurring_group_scheduling_is_a_configuration_error(stack: Stack) -> None:
    from jobkit import ConfigurationError

    with pytest.raises(ConfigurationError, match="JOBKIT_RECURRING_GROUP"):
        stack.client.schedule("x", "rate(1 hour)", ECHO, payload())
