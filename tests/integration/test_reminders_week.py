"""A week of reminder sequences on `jobkit_tools.testing`'s virtual clock: the reminders function
and the email function run inline against moto, and seven days pass in well under a second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import boto3
import pytest

from email_worker import processors as email_processors
from email_worker.settings import get_email_settings
from jobkit import JobState
from jobkit_apps.applications import SequenceState, mark_documents_complete, put_application
from jobkit_apps.reminders import (
    cancel_sequence,
    email_job_id,
    get_sequence,
    start_sequence,
    step_job_id,
)
from jobkit_tools.testing import DEFAULT_START, Harness
from reminders_worker import processors as reminders_processors

SENDER = "no-reply@jobkit.example.com"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def week(jobkit_harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The reminders and email functions on the harness; the sender verified in moto's SES."""
    monkeypatch.setenv("EMAIL_FROM_ADDRESS", SENDER)
    get_email_settings.cache_clear()
    boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    jobkit_harness.register(email_processors.worker)
    jobkit_harness.register(reminders_processors.worker)
    yield jobkit_harness
    get_email_settings.cache_clear()


def applicant(harness: Harness, name: str) -> str:
    put_application(
        name,
        email=f"{name}@example.com",
        name="Ada",
        timezone="Europe/Berlin",
        missing_documents=["passport", "proof of address"],
    )
    return name


def reminders_to(harness: Harness, name: str) -> int:
    return sum(1 for m in harness.sent_emails() if m.to == [f"{name}@example.com"])


def test_the_default_sequence_reminds_on_days_1_3_5_7_at_nine_in_the_applicants_timezone(
    week: Harness,
) -> None:
    # Given an applicant in Berlin with missing documents, and a sequence started now
    # (Monday 2026-03-02, 10:00 Berlin time)
    name = applicant(week, "ada")
    sequence = start_sequence(name, client=week.client)

    # When a week passes
    started = time.perf_counter()
    week.advance(timedelta(days=7, hours=1))
    print(f"\na week of reminders: {(time.perf_counter() - started) * 1000:.0f} ms")

    # Then four reminders went out, each at 09:00 Berlin time on days 1, 3, 5 and 7
    assert reminders_to(week, name) == 4
    for step, day in enumerate((1, 3, 5, 7), start=1):
        email = week.job(email_job_id(step_job_id(name, sequence.id, step)))
        assert email.state is JobState.SUCCEEDED and email.started_at is not None
        due = datetime(2026, 3, 2 + day, 9, 0, tzinfo=BERLIN)
        assert timedelta(0) <= email.started_at - due < timedelta(seconds=1)
    # And the sequence completed after its last step
    finished = get_sequence(name)
    assert finished is not None and finished.state is SequenceState.COMPLETED


def test_documents_that_arrive_on_day_4_stop_the_sequence_after_two_reminders(
    week: Harness,
) -> None:
    # Given a sequence that has sent its reminders of days 1 and 3
    name = applicant(week, "grace")
    start_sequence(name, client=week.client)
    week.run_until(DEFAULT_START + timedelta(days=4))
    assert reminders_to(week, name) == 2

    # When the documents come in, and the rest of the week passes
    mark_documents_complete(name)
    week.advance(timedelta(days=4))

    # Then no more reminders went out, and the sequence ended on day 5 as completed
    assert reminders_to(week, name) == 2
    finished = get_sequence(name)
    assert finished is not None and finished.state is SequenceState.COMPLETED


def test_a_sequence_cancelled_after_the_first_reminder_sends_no_more(week: Harness) -> None:
    # Given a sequence that has sent its first reminder
    name = applicant(week, "edsger")
    start_sequence(name, client=week.client)
    week.run_until(DEFAULT_START + timedelta(days=2))
    assert reminders_to(week, name) == 1

    # When it is cancelled, and the week passes
    cancel_sequence(name, client=week.client)
    week.advance(timedelta(days=6))

    # Then nothing more was sent, and it stays cancelled with no step left to run
    assert reminders_to(week, name) == 1
    finished = get_sequence(name)
    assert finished is not None and finished.state is SequenceState.CANCELLED
    assert week.run_until_idle() <= DEFAULT_START + timedelta(days=8)


def test_starting_the_same_sequence_twice_reminds_once_a_step(week: Harness) -> None:
    # Given a sequence started twice (a retried HTTP request, say)
    name = applicant(week, "barbara")
    first = start_sequence(name, client=week.client)
    again = start_sequence(name, client=week.client)

    # When the week passes
    week.advance(timedelta(days=8))

    # Then it is one sequence, and four reminders went out, not eight
    assert again.id == first.id
    assert reminders_to(week, name) == 4
