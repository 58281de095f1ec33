"""Declaring a job type's tracking mode: pure behaviour, no AWS."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import jobkit
from jobkit import Guarantee, JobType, Tracking
from jobkit.errors import NOT_IN_LOG_HINT, DeclarationError, JobNotFoundError
from jobkit.jobs import registered_job_types


class Note(BaseModel):
    n: int = 0


def test_tracking_is_full_by_default() -> None:
    # Given a job type declared without a tracking mode, Then it tracks its whole life
    job_type = JobType("test.tracking.default", Note, queue="email")
    assert job_type.tracking is Tracking.FULL
    assert "Tracking" in jobkit.__all__


@pytest.mark.parametrize("guarantee", list(Guarantee))
def test_light_goes_with_either_guarantee(guarantee: Guarantee) -> None:
    # Given a light job type of either guarantee, Then it is declared (by value or by name)
    job_type = JobType(
        f"test.tracking.light_{guarantee.value}",
        Note,
        "email",
        guarantee=guarantee,
        tracking=Tracking.LIGHT,
    )
    by_name = JobType(
        f"test.tracking.light2_{guarantee.value}",
        Note,
        "email",
        guarantee=guarantee,
        tracking="light",  # type: ignore[arg-type]
    )
    assert job_type.tracking is by_name.tracking is Tracking.LIGHT


def test_failures_with_at_most_once_is_a_declaration_error() -> None:
    # When a type that tracks failures only is declared at most once
    with pytest.raises(DeclarationError) as caught:
        JobType(
            "test.tracking.amo_failures",
            Note,
            "email",
            guarantee=Guarantee.AT_MOST_ONCE,
            tracking=Tracking.FAILURES,
        )
    # Then the error names the type, both settings, the reason and the way out
    message = str(caught.value)
    assert message.startswith("test.tracking.amo_failures: tracking='failures' cannot go with")
    assert "at_most_once" in message and "no claim and no lease" in message
    assert "run it twice" in message and "tracking='light'" in message
    # and the type was not registered
    assert "test.tracking.amo_failures" not in registered_job_types()


def test_failures_with_at_least_once_is_declared() -> None:
    job_type = JobType("test.tracking.failures_ok", Note, "email", tracking=Tracking.FAILURES)
    assert (job_type.tracking, job_type.guarantee) == (Tracking.FAILURES, Guarantee.AT_LEAST_ONCE)


def test_an_unknown_tracking_mode_is_a_declaration_error() -> None:
    with pytest.raises(DeclarationError, match="tracking is one of 'full', 'light', 'failures'"):
        JobType("test.tracking.bad", Note, "email", tracking="some")  # type: ignore[arg-type]


def test_job_not_found_says_light_and_failures_jobs_may_not_be_logged() -> None:
    # Given the error for an id the log does not have, Then it says why that may be
    error = JobNotFoundError("no job 'x' in the job log")
    assert str(error) == f"no job 'x' in the job log {NOT_IN_LOG_HINT}"
    assert "tracking 'light' or 'failures' is not in the log until it runs" in NOT_IN_LOG_HINT
