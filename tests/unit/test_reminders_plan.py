"""Reminder sequences without AWS: when each step is due, and what is refused up front."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from jobkit.errors import JobkitError, JobValidationError
from jobkit_apps.applications import InvalidApplicationError, Plan
from jobkit_apps.reminders import (
    DEFAULT_OFFSETS,
    STEP,
    InvalidSequenceError,
    StepPayload,
    email_job_id,
    make_plan,
    start_sequence,
    step_job_id,
)

DAYS = [timedelta(days=d) for d in (1, 3, 5, 7)]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_default_plan_is_days_1_3_5_7_at_nine_local_time() -> None:
    # Given a start on a summer afternoon in Berlin (UTC+2)
    plan = make_plan(utc(2026, 6, 1, 14, 30), DEFAULT_OFFSETS, time(9, 0), "Europe/Berlin")
    # When the due times are computed
    # Then each step is due at 9:00 Berlin time (7:00 UTC) on days 1, 3, 5 and 7 after the start
    assert plan.due_times() == [
        utc(2026, 6, 2, 7),
        utc(2026, 6, 4, 7),
        utc(2026, 6, 6, 7),
        utc(2026, 6, 8, 7),
    ]


def test_steps_keep_the_local_time_across_a_dst_change() -> None:
    # Given a start two days before Berlin moves its clocks forward (29 March 2026)
    plan = make_plan(utc(2026, 3, 27, 10), DAYS, time(9, 0), "Europe/Berlin")
    # When the due times are computed
    due = plan.due_times()
    # Then day 1 is 9:00 CET (8:00 UTC) and day 3 onwards 9:00 CEST (7:00 UTC)
    assert due[0] == utc(2026, 3, 28, 8)
    assert due[1:] == [utc(2026, 3, 30, 7), utc(2026, 4, 1, 7), utc(2026, 4, 3, 7)]
    # And in New York, across the autumn change (1 November 2026), 9:00 EDT then 9:00 EST
    fall = make_plan(utc(2026, 10, 31, 12), DAYS[:2], time(9, 0), "America/New_York")
    assert fall.due_times() == [utc(2026, 11, 1, 14), utc(2026, 11, 3, 14)]


def test_a_send_time_skipped_by_spring_forward_comes_an_hour_later() -> None:
    # Given 2:30 in New York, which does not exist on 8 March 2026 (2:00 -> 3:00)
    plan = make_plan(utc(2026, 3, 7, 12), DAYS[:1], time(2, 30), "America/New_York")
    # Then the step is due at 3:30 EDT, as a wall clock would show it
    assert plan.due(1) == utc(2026, 3, 8, 7, 30)


def test_the_start_date_is_the_applicants_local_date() -> None:
    # Given a start at 23:30 UTC, already the next morning in Tokyo
    plan = make_plan(utc(2026, 6, 1, 23, 30), DAYS[:1], time(9, 0), "Asia/Tokyo")
    # Then day 1 counts from the Tokyo date (2 June): 3 June 9:00 JST = 0:00 UTC
    assert plan.due(1) == utc(2026, 6, 3, 0)


def test_without_a_send_time_steps_are_exact_offsets_from_the_start() -> None:
    start = utc(2026, 6, 1, 14, 30, 15)
    plan = make_plan(start, [5, timedelta(seconds=20), 45.0], None, "Europe/Berlin")
    assert plan.offsets == (5, 20, 45)
    assert plan.due_times() == [start + timedelta(seconds=s) for s in (5, 20, 45)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "unknown timezone 'Mars/Olympus_Mons'"),
        ({"timezone": "../etc/passwd"}, "unknown timezone"),
        ({"offsets": []}, "offsets"),
        ({"offsets": [timedelta(days=-1)]}, "must not be negative"),
        ({"offsets": [timedelta(days=3), timedelta(days=1)]}, "increasing order"),
        ({"offsets": [timedelta(days=1), timedelta(days=1)]}, "increasing order"),
        ({"offsets": [timedelta(hours=36)]}, "whole days"),
        ({"offsets": [timedelta(seconds=1.5)], "send_time": None}, "whole seconds"),
        ({"offsets": ["1 day"]}, "timedeltas"),
        ({"offsets": [timedelta(days=d) for d in range(1, 60)]}, "at most 50"),
        ({"send_time": time(9, 0, tzinfo=UTC)}, "wall-clock"),
        ({"now": datetime(2026, 6, 1, 9)}, "timezone-aware"),
    ],
)
def test_invalid_sequences_are_refused_before_any_aws_call(
    kwargs: dict[str, Any], message: str
) -> None:
    # Given no AWS at all (no table, no queue, no client)
    # When a sequence is started with an invalid plan
    # Then a clear jobkit error says what is wrong
    with pytest.raises(InvalidSequenceError, match=message) as caught:
        start_sequence("app-1", **kwargs)
    assert isinstance(caught.value, JobkitError)


@pytest.mark.parametrize("applicant_id", ["", "ada@example.com", "a b", "x" * 200, "-lead"])
def test_an_applicant_id_must_be_an_id(applicant_id: str) -> None:
    with pytest.raises(InvalidApplicationError, match="applicant_id"):
        start_sequence(applicant_id)


def test_step_payload_carries_ids_and_the_plan_only() -> None:
    # Given a step of a two-step plan
    plan = make_plan(utc(2026, 6, 1, 8), DAYS[:2], time(9, 0), "Europe/London")
    payload = StepPayload(applicant_id="app-1", sequence_id="s1", step=2, plan=plan)
    # Then it validates as the job type's payload and names no person
    data = payload.model_dump(mode="json")
    assert set(data) == {"applicant_id", "sequence_id", "step", "plan"}
    assert STEP.validate(data) == payload
    assert "@" not in str(data)
    # And a step past the plan is refused naming the field
    with pytest.raises(JobValidationError, match="past the plan's 2 steps"):
        STEP.validate({**data, "step": 3})


def test_plan_round_trips_through_json() -> None:
    plan = make_plan(utc(2026, 6, 1, 8), DAYS, None, "Europe/London")
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_job_ids_are_deterministic() -> None:
    # The same step of the same sequence always has the same job id (and so does its email)
    assert step_job_id("app-1", "s1", 2) == step_job_id("app-1", "s1", 2)
    assert step_job_id("app-1", "s1", 2) != step_job_id("app-1", "s1", 3)
    assert step_job_id("app-1", "s1", 2) != step_job_id("app-1", "s2", 2)
    assert email_job_id(step_job_id("app-1", "s1", 2)) == "reminders:app-1:s1:2:email"
