"""Models that cross a boundary: the SQS envelope and the job as the log records it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobkit.errors import InvalidJobIdError

# A job id: 1-512 visible ASCII characters (letters, digits, punctuation; no spaces or control
# characters). It travels as an HTTP header (a webhook's Idempotency-Key), an SES tag and a
# DynamoDB key, and is typed into shells: all of them take these characters as they are.
JOB_ID_MAX_LENGTH = 512
JOB_ID_PATTERN = r"^[!-~]{1,512}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)


def check_job_id(job_id: object) -> str:
    """`job_id` if it is a valid job id, else `InvalidJobIdError` saying what is wrong."""
    if not isinstance(job_id, str):
        raise InvalidJobIdError(f"a job id is a string, not {type(job_id).__name__}")
    if _JOB_ID.match(job_id):
        return job_id
    if not job_id:
        raise InvalidJobIdError("a job id must not be empty (leave it out to get a new one)")
    if len(job_id) > JOB_ID_MAX_LENGTH:
        raise InvalidJobIdError(
            f"a job id has at most {JOB_ID_MAX_LENGTH} characters, this one {len(job_id):,}"
        )
    bad = next(c for c in job_id if not "!" <= c <= "~")
    raise InvalidJobIdError(
        f"a job id may hold letters, digits and punctuation (visible ASCII) only, not "
        f"{bad!r} (e.g. 'invite-42', 'order:1234:receipt')"
    )


# SQS rejects a message body over 256 KiB (262,144 bytes).
SQS_MAX_MESSAGE_BYTES = 262_144
# SQS DelaySeconds tops out at 15 minutes.
SQS_MAX_DELAY_SECONDS = 900


class JobState(StrEnum):
    """Lifecycle: scheduled -> queued -> running -> succeeded | retrying -> running | failed."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class DeadLetter(BaseModel):
    """Why jobkit put a message in a dead-letter queue; a redrive of it gets fresh attempts."""

    model_config = ConfigDict(frozen=True)

    reason: str
    generation: int = 0
    at: datetime


class Envelope(BaseModel):
    """The SQS message body of a job. Its JSON Schema is the contract for other producers."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    id: str = Field(pattern=JOB_ID_PATTERN)
    type: str = Field(min_length=1)
    payload: dict[str, Any]
    enqueued_at: datetime
    not_before: datetime | None = None  # a worker that gets it earlier hides it until then
    # "schedule": a recurring schedule's run, with no log entry until its first delivery.
    origin: Literal["schedule"] | None = None
    dead_letter: DeadLetter | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class Job(BaseModel):
    """A job as the job log knows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    queue: str
    state: JobState
    attempts: int = 0
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    progress: Any = None
    result: Any = None
    error: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict, repr=False)
    generation: int = 0
    run_at: datetime | None = None
    lease_until: datetime | None = None  # while running: when another attempt may take over
    next_attempt_at: datetime | None = None  # while retrying
    dead_letter_due: bool = False  # failed, and its dead letter not yet in the DLQ


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Fixed-width UTC timestamp, so that strings sort as times do (index sort keys)."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
