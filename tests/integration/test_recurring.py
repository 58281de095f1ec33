"""Recurring jobs: cron/rate schedules made at run time, validated up front, and one job per
run even when Scheduler fires a run twice (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from jobkit import (
    InvalidScheduleError,
    JobState,
    JobValidationError,
    ScheduleNotFoundError,
    aws,
)
from jobkit.client import Jobkit
from jobkit_tools.local.scheduler import ScheduleFirer
from jobkit_tools.testing import DEFAULT_START, Harness
from tests.conftest import SCHEDULER_ROLE, Stack, scheduling_client, stored_schedules

from .test_core_support import (
    ECHO,
    Calls,
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
    with pytest.raises(InvalidScheduleError, match="the timezone is empty"):
        client.schedule("tz", "rate(1 hour)", ECHO, payload(), timezone="")
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


def test_a_paused_schedule_declared_again_keeps_its_state_unless_told(client: Jobkit) -> None:
    # Given a schedule, paused
    client.schedule("digest", "cron(0 9 ? * MON *)", ECHO, payload(1))
    client.pause_schedule("digest")

    # When it is declared again with another payload, as start-up code does
    again = client.schedule("digest", "cron(0 9 ? * MON *)", ECHO, payload(2))

    # Then it is updated and still paused, in Scheduler too
    assert (again.state, again.payload["n"], again.next_run) == ("DISABLED", 2, None)
    (held,) = stored()
    assert held["State"] == "DISABLED"

    # When it is declared with enabled=True, then enabled=False, then as a new one
    resumed = client.schedule("digest", "cron(0 9 ? * MON *)", ECHO, payload(3), enabled=True)
    paused = client.schedule("digest", "cron(0 9 ? * MON *)", ECHO, payload(4), enabled=False)
    new = client.schedule("fresh", "rate(1 day)", ECHO, payload())

    # Then each says and stores its state: True and False set it, a new one is enabled
    assert (resumed.state, paused.state, new.state) == ("ENABLED", "DISABLED", "ENABLED")
    assert {s["Name"]: s["State"] for s in stored()} == {"digest": "DISABLED", "fresh": "ENABLED"}


@pytest.mark.parametrize("operation", ["get", "pause", "resume", "delete"])
@pytest.mark.parametrize("name", ["", "no spaces please", "x" * 65])
def test_a_bad_name_to_read_pause_resume_or_delete_is_a_clear_error(
    client: Jobkit, operation: str, name: str
) -> None:
    # When a schedule is asked for by a name Scheduler cannot have
    with pytest.raises(InvalidScheduleError) as raised:
        getattr(client, f"{operation}_schedule")(name)

    # Then the error says what a name may be (not botocore's parameter validation)
    assert "schedule name" in str(raised.value)


def test_a_new_schedule_is_one_request_and_declaring_it_again_reads_it_once(
    client: Jobkit,
) -> None:
    # Given every Scheduler call jobkit makes, counted
    calls = Calls()
    aws.client("scheduler").meta.events.register("provide-client-params", calls)

    # When a schedule is declared, then declared again
    client.schedule("hourly", "rate(1 hour)", ECHO, payload(1))
    new = dict(calls.ops)
    calls.reset()
    client.schedule("hourly", "rate(1 hour)", ECHO, payload(2))

    # Then the new one was one CreateSchedule, answered without a read; the existing one was
    # read once (its state to keep, its creation) and updated
    assert new == {"CreateSchedule": 1}
    assert dict(calls.ops) == {"CreateSchedule": 1, "GetSchedule": 1, "UpdateSchedule": 1}


NEVER = [
    ("cron(0 2 30 2 ? *)", "UTC"),  # 30 February
    ("cron(0 9 31 4,6,9,11 ? *)", "UTC"),  # the 31st of 30-day months
    ("cron(0 9 * * ? 2020-2025)", "UTC"),  # only past years
    ("cron(30 2 8 3 ? 2026)", "America/New_York"),  # the hour DST skips, that one day
]
RARE = ["cron(0 9 29 2 ? *)", "cron(0 9 ? 2 2#5 *)"]  # 29 February; a fifth Monday of it


def test_a_cron_that_never_fires_is_refused_and_one_that_fires_rarely_is_not(
    client: Jobkit,
) -> None:
    # When schedules are declared with crons that no time from now on matches
    for expression, timezone_name in NEVER:
        with pytest.raises(InvalidScheduleError) as raised:
            client.schedule("never", expression, ECHO, payload(), timezone=timezone_name)

        # Then the error says so, naming the expression, and nothing is created
        assert f"{expression} never fires" in str(raised.value)
    assert stored() == []

    # When they are declared with crons that fire only on some 29 February
    made = [client.schedule(f"rare-{i}", e, ECHO, payload()) for i, e in enumerate(RARE)]

    # Then they are made, with their next run on a 29 February
    assert [(m.next_run.month, m.next_run.day) for m in made if m.next_run] == [(2, 29)] * 2
    assert len(stored()) == 2


def test_start_and_end_are_stored_shown_and_kept_by_pause_and_resume(client: Jobkit) -> None:
    # Given a schedule from tomorrow to a month on, given in UTC+2
    plus_two = timezone(timedelta(hours=2))
    start = (datetime.now(plus_two) + timedelta(days=1)).replace(microsecond=0)
    end = start + timedelta(days=30)
    made = client.schedule("bounded", "rate(1 hour)", ECHO, payload(), start=start, end=end)

    # Then Scheduler holds them as StartDate and EndDate, and the caller sees them, with the
    # first run at the start (a rate counts from its start)
    (held,) = stored()
    assert (held["StartDate"], held["EndDate"]) == (start, end)
    assert (made.start, made.end, made.next_run) == (start, end, start)

    # When it is paused, then resumed (UpdateSchedule replaces the whole definition)
    paused = client.pause_schedule("bounded")
    (held_paused,) = stored()
    resumed = client.resume_schedule("bounded")
    (held_resumed,) = stored()

    # Then both keep its start and end
    for held in (held_paused, held_resumed):
        assert (held["StartDate"], held["EndDate"]) == (start, end)
    assert (paused.start, paused.end, resumed.start, resumed.end) == (start, end, start, end)
    assert [s.end for s in client.list_schedules()] == [end]

    # When it is declared again without them, then they are gone: the declaration is whole
    again = client.schedule("bounded", "rate(1 hour)", ECHO, payload())
    (held,) = stored()
    assert "StartDate" not in held and "EndDate" not in held
    assert (again.start, again.end) == (None, None)


def _bad_window() -> list[tuple[str, dict[str, Any], str]]:
    now = datetime.now(UTC)
    return [
        ("naive start", {"start": datetime(2030, 1, 1)}, "start must be timezone-aware"),
        ("naive end", {"end": datetime(2030, 1, 1)}, "end must be timezone-aware"),
        ("end in the past", {"end": now - timedelta(minutes=1)}, "is in the past"),
        (
            "end before start",
            {"start": now + timedelta(days=2), "end": now + timedelta(days=1)},
            "must be after start",
        ),
        ("start in the past", {"start": now - timedelta(minutes=10)}, "is in the past"),
        ("no run before the end", {"end": now + timedelta(hours=2)}, "never runs between"),
    ]


BAD_WINDOW = _bad_window()


@pytest.mark.parametrize(("case", "window", "says"), BAD_WINDOW, ids=[c[0] for c in BAD_WINDOW])
def test_a_bad_start_or_end_is_refused_before_anything_is_created(
    client: Jobkit, case: str, window: dict[str, Any], says: str
) -> None:
    # When a daily schedule is declared with a start or end that cannot be honoured
    with pytest.raises(InvalidScheduleError) as raised:
        client.schedule("window", "rate(1 day)", ECHO, payload(), **window)

    # Then the error says why, and nothing is created
    assert says in str(raised.value), case
    assert stored() == []


def test_a_rate_schedules_next_run_follows_its_creation_not_the_moment_it_is_read(
    jobkit_harness: Harness,
) -> None:
    # Given rate(1 hour) made at 09:00 (the harness's virtual clock)
    client = jobkit_harness.client
    made = client.schedule("hourly", "rate(1 hour)", ECHO, payload())

    # When it is read at 09:25 and at 09:50, and listed at 10:30
    jobkit_harness.advance(timedelta(minutes=25))
    early = client.get_schedule("hourly")
    jobkit_harness.advance(timedelta(minutes=25))
    late = client.get_schedule("hourly")
    jobkit_harness.advance(timedelta(minutes=40))
    (listed,) = client.list_schedules()

    # Then its next run is 10:00 each time until 10:00, and 11:00 after it
    hour = timedelta(hours=1)
    assert made.next_run == early.next_run == late.next_run == DEFAULT_START + hour
    assert listed.next_run == DEFAULT_START + 2 * hour

    # When it is declared again at 10:30 (another payload), then its runs stay on the hour
    again = client.schedule("hourly", "rate(1 hour)", ECHO, payload(2))
    assert again.next_run == DEFAULT_START + 2 * hour


def test_a_rate_counts_from_its_start_and_has_no_next_run_after_its_end(
    jobkit_harness: Harness,
) -> None:
    # Given rate(1 hour) from tomorrow 09:07 to two hours later
    client = jobkit_harness.client
    start = DEFAULT_START + timedelta(days=1, minutes=7)
    end = start + timedelta(hours=2)
    made = client.schedule("bounded", "rate(1 hour)", ECHO, payload(), start=start, end=end)

    # When it is read before its start, half an hour after it, and after its end
    before = made.next_run
    jobkit_harness.run_until(start + timedelta(minutes=30))
    during = client.get_schedule("bounded").next_run
    jobkit_harness.run_until(end + timedelta(seconds=1))
    after = client.get_schedule("bounded").next_run

    # Then the runs are at the start and every hour from it, and none is left after the end
    assert (before, during, after) == (start, start + timedelta(hours=1), None)


def test_a_start_already_passed_may_be_declared_again_but_not_a_new_past_one(
    jobkit_harness: Harness,
) -> None:
    # Given a schedule that started an hour after it was declared, a day ago
    client = jobkit_harness.client
    start = DEFAULT_START + timedelta(hours=1)
    client.schedule("daily", "cron(0 10 * * ? *)", ECHO, payload(), start=start)
    jobkit_harness.advance(timedelta(days=1))

    # When it is declared again with that same start, then it is accepted as it stands
    again = client.schedule("daily", "cron(0 10 * * ? *)", ECHO, payload(2), start=start)
    assert again.start == start and again.payload["n"] == 2

    # When it is declared with another start in the past, then that is refused
    with pytest.raises(InvalidScheduleError, match="is in the past"):
        client.schedule(
            "daily", "cron(0 10 * * ? *)", ECHO, payload(), start=start + timedelta(hours=1)
        )
    assert client.get_schedule("daily").start == start


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
    # known to have no entry yet, so no claim is tried first; plus the batch's page
    assert (first.get("PutItem"), first.get("UpdateItem")) == (2, 1)
    job = client.get_job(run_id)
    assert job is not None and job.state is JobState.SUCCEEDED


def test_without_a_recurring_group_scheduling_is_a_configuration_error(stack: Stack) -> None:
    from jobkit import ConfigurationError

    with pytest.raises(ConfigurationError, match="JOBKIT_RECURRING_GROUP"):
        stack.client.schedule("x", "rate(1 hour)", ECHO, payload())
