"""Models that cross a boundary: the SQS envelope and the job as the log records it."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    id: str = Field(min_length=1, max_length=512)
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Fixed-width UTC timestamp, so that strings sort as times do (index sort keys)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
