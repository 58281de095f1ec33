"""Reminder sequences: reminder emails over days for an applicant with missing documents.

A sequence is a plan (when each step is due) and one `reminders.step` job at a time: each step
reads the applicant's record (`jobkit_apps.applications`), enqueues the reminder email through the
email worker, and schedules the next step. It ends when the documents are complete, after its
last step, or when `cancel_sequence` cancels it. Processed by the reminders function.

    from jobkit_apps.applications import put_application, mark_documents_complete
    from jobkit_apps.reminders import start_sequence, cancel_sequence

    put_application("app-42", email="ada@example.com", name="Ada", timezone="Europe/London",
                    missing_documents=["passport", "payslip"])
    start_sequence("app-42")            # day 1, 3, 5, 7 at 9:00 London time
    mark_documents_complete("app-42")   # the next step ends it without sending
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, time, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from jobkit import aws
from jobkit.client import Jobkit, default_client
from jobkit.errors import InvalidStateError, JobNotFoundError
from jobkit.jobs import Backoff, JobType, describe_validation_error
from jobkit.models import SQS_MAX_DELAY_SECONDS, Job, utcnow
from jobkit_apps.applications.models import (
    APPLICANT_ID,
    MAX_STEPS,
    ApplicationNotFoundError,
    InvalidSequenceError,
    Plan,
    RemindersError,
    Sequence,
    SequenceState,
    check_applicant_id,
)
from jobkit_apps.applications.store import Applications, default_applications

QUEUE = "reminders"
DEFAULT_OFFSETS = (timedelta(days=1), timedelta(days=3), timedelta(days=5), timedelta(days=7))
DEFAULT_SEND_TIME = time(9, 0)

__all__ = [
    "DEFAULT_OFFSETS",
    "DEFAULT_SEND_TIME",
    "QUEUE",
    "STEP",
    "ApplicationNotFoundError",
    "InvalidSequenceError",
    "NoMissingDocumentsError",
    "RemindersError",
    "Sequence",
    "SequenceState",
    "StepPayload",
    "cancel_sequence",
    "get_sequence",
    "start_sequence",
]


class NoMissingDocumentsError(RemindersError):
    """The application has no missing documents: there is nothing to remind of."""


class StepPayload(BaseModel):
    """One step of a sequence: ids and the plan only (the worker reads the rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    applicant_id: str = Field(pattern=APPLICANT_ID)
    sequence_id: str = Field(min_length=1, max_length=64)
    step: int = Field(ge=1, le=MAX_STEPS, description="1-based.")
    plan: Plan

    @model_validator(mode="after")
    def _step_in_plan(self) -> StepPayload:
        if self.step > self.plan.steps:
            raise ValueError(f"step {self.step} is past the plan's {self.plan.steps} steps")
        return self


# A step is a few DynamoDB and SQS/Scheduler calls: seconds of backoff, 20 s to run.
STEP = JobType(
    "reminders.step",
    StepPayload,
    QUEUE,
    max_attempts=5,
    backoff=Backoff(base=2.0, cap=300.0),
    timeout=20.0,
    description="One step of a reminder sequence: remind by email, schedule the next step.",
)


def step_job_id(applicant_id: str, sequence_id: str, step: int) -> str:
    """The job id of a step: deterministic, so a retried step never schedules twice."""
    return f"reminders:{applicant_id}:{sequence_id}:{step}"


def email_job_id(step_job: str) -> str:
    """The job id of a step's reminder email: a retried step never sends twice."""
    return f"{step_job}:email"


def step_payload(sequence: Sequence, step: int) -> StepPayload:
    return StepPayload(
        applicant_id=sequence.applicant_id, sequence_id=sequence.id, step=step, plan=sequence.plan
    )


def enqueue_step(jobkit: Jobkit, sequence: Sequence, step: int, job_id: str) -> Job:
    """Schedule step `step` for its due time (the same id again returns the same job)."""
    return jobkit.enqueue(
        STEP, step_payload(sequence, step), job_id=job_id, run_at=sequence.plan.due(step)
    )


def cancel_job(jobkit: Jobkit, job_id: str) -> bool:
    """Cancel a job if it can still be cancelled; False if it runs, ran, or never existed."""
    try:
        jobkit.cancel(job_id)
    except (JobNotFoundError, InvalidStateError):
        return False
    return True


def make_plan(
    start: datetime,
    offsets: Iterable[timedelta | float],
    send_time: time | None,
    timezone: str,
) -> Plan:
    """The plan of a sequence started at `start`, or `InvalidSequenceError` saying why not."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise InvalidSequenceError("now must be timezone-aware (e.g. datetime.now(UTC))")
    seconds: list[int] = []
    for offset in offsets:
        if isinstance(offset, bool) or not isinstance(offset, timedelta | int | float):
            raise InvalidSequenceError(f"offsets are timedeltas, not {type(offset).__name__}")
        value = offset.total_seconds() if isinstance(offset, timedelta) else float(offset)
        if value != int(value):
            raise InvalidSequenceError(f"offsets are whole seconds (got {value:g} s)")
        seconds.append(int(value))
    try:
        return Plan(start=start, timezone=timezone, send_time=send_time, offsets=tuple(seconds))
    except PydanticValidationError as exc:
        raise InvalidSequenceError(
            "invalid reminder sequence: " + "; ".join(describe_validation_error(exc))
        ) from None


@aws.service_errors
def start_sequence(
    applicant_id: str,
    *,
    offsets: Iterable[timedelta | float] = DEFAULT_OFFSETS,
    send_time: time | None = DEFAULT_SEND_TIME,
    timezone: str | None = None,
    client: Jobkit | None = None,
    now: datetime | None = None,
    applications: Applications | None = None,
) -> Sequence:
    """Start reminding the applicant of their missing documents.

    Step n is due on the start date in the applicant's timezone (`timezone`, else the
    application's) plus `offsets[n]` days, at `send_time` local wall-clock time; with
    `send_time=None`, exactly `now + offsets[n]`. While a sequence is active, starting again
    returns it instead of a second one; after it completed or was cancelled, a new one starts.

    Costs one read and one conditional write of the record, plus the step's enqueue.
    """
    check_applicant_id(applicant_id)
    offsets = tuple(offsets)
    start = now or utcnow()
    # Everything that can be checked without AWS fails here, before any request.
    make_plan(start, offsets, send_time, timezone or "UTC")
    jobkit = client or default_client()
    jobkit.settings.queue_url_of(QUEUE)
    applications = applications or default_applications()

    application = applications.get(applicant_id)
    if application is None:
        raise ApplicationNotFoundError(f"no application {applicant_id!r}")
    current = application.sequence
    if current is not None and current.state is SequenceState.ACTIVE:
        return _resume(jobkit, current)
    if application.documents_complete or not application.missing_documents:
        raise NoMissingDocumentsError(
            f"application {applicant_id!r} has no missing documents: nothing to remind of"
        )
    plan = make_plan(start, offsets, send_time, timezone or application.timezone)
    if (plan.due(1) - utcnow()).total_seconds() > SQS_MAX_DELAY_SECONDS:
        jobkit.settings.require_scheduler()

    sequence_id = uuid.uuid4().hex[:16]
    first = step_job_id(applicant_id, sequence_id, 1)
    stamp = utcnow()
    sequence = Sequence(
        applicant_id=applicant_id,
        id=sequence_id,
        state=SequenceState.ACTIVE,
        step=1,
        plan=plan,
        job_id=first,
        next_due=plan.due(1),
        started_at=stamp,
        updated_at=stamp,
    )
    started, record = applications.start(sequence)
    if not started:
        if record is None:
            raise ApplicationNotFoundError(f"no application {applicant_id!r}")
        assert record.sequence is not None  # the condition failed on an active sequence
        return _resume(jobkit, record.sequence)  # another start won the race
    try:
        enqueue_step(jobkit, sequence, 1, first)
    except Exception:
        applications.finish(
            sequence, first, SequenceState.CANCELLED, "its first step could not be enqueued"
        )
        raise
    assert record is not None and record.sequence is not None
    return record.sequence


def _resume(jobkit: Jobkit, active: Sequence) -> Sequence:
    """The active sequence, with its pending step enqueued: a start that crashed between its
    record write and its enqueue leaves no job behind, and the same id again is free if it
    exists (one conditional write that fails)."""
    if active.job_id:
        enqueue_step(jobkit, active, active.step, active.job_id)
    return active


@aws.service_errors
def cancel_sequence(
    applicant_id: str,
    *,
    client: Jobkit | None = None,
    applications: Applications | None = None,
) -> Sequence | None:
    """Stop the applicant's active sequence at once: the record says cancelled (a step that is
    running sees that and does nothing further) and the pending step job is cancelled (its
    schedule deleted). Returns the cancelled sequence, or None if none was active."""
    check_applicant_id(applicant_id)
    applications = applications or default_applications()
    cancelled, record = applications.cancel(applicant_id, "cancelled")
    if record is None:
        raise ApplicationNotFoundError(f"no application {applicant_id!r}")
    if not cancelled or record.sequence is None:
        return None
    if record.sequence.job_id:
        cancel_job(client or default_client(), record.sequence.job_id)
    return record.sequence


@aws.service_errors
def get_sequence(applicant_id: str, *, applications: Applications | None = None) -> Sequence | None:
    """The applicant's current or last sequence (None if none ever started)."""
    application = (applications or default_applications()).get(check_applicant_id(applicant_id))
    if application is None:
        raise ApplicationNotFoundError(f"no application {applicant_id!r}")
    return application.sequence
