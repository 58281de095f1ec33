"""The Jobs HTTP API's request and response bodies. They are pydantic models because the
Event Handler validates requests against them and generates the OpenAPI document from them."""

from __future__ import annotations

import re

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from jobkit.jobs import JobType
from jobkit.models import JOB_ID_MAX_LENGTH, JOB_ID_PATTERN, Job
from jobkit.producer_calls import MAX_DELAY

JobIdField = Field(
    default=None,
    pattern=JOB_ID_PATTERN,
    max_length=JOB_ID_MAX_LENGTH,
    description="1-512 visible ASCII characters; the same id again returns the first job.",
)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: e.g. invalid_request, job_not_found.")
    message: str = Field(description="What is wrong, for a person; no payload values in it.")


class ErrorBody(BaseModel):
    """Every error answer: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorDetail


class EnqueueFields(BaseModel):
    """What an enqueue carries besides the payload (each job type's body adds its payload)."""

    # Each type's body is built when its route first validates one, not when the API starts:
    # a cold start then builds none of them (email-validator loads with an EmailStr payload's).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    job_id: str | None = JobIdField
    delay_seconds: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY.total_seconds(),
        description="Seconds before the job may run (at most 365 days); not with run_at.",
    )
    run_at: AwareDatetime | None = Field(
        default=None, description="When the job may run, with its UTC offset; not with delay."
    )


def enqueue_body(job_type: JobType) -> type[EnqueueFields]:
    """The body of `POST /jobs/<type>`: `{payload: <the type's model>, job_id?, delay_seconds?,
    run_at?}`; its OpenAPI schema is named after the type (`email.send_invite` ->
    `EnqueueEmailSendInvite`), so every type's payload schema is in the document."""
    words = re.split(r"[^0-9A-Za-z]+", job_type.name)
    name = "Enqueue" + "".join(word[:1].upper() + word[1:] for word in words)
    description = job_type.description or f"The payload of a {job_type.name} job."
    model: type[EnqueueFields] = create_model(
        name,
        __base__=EnqueueFields,
        __doc__=f"Enqueue a {job_type.name} job (queue {job_type.queue!r}).",
        payload=(job_type.payload, Field(description=description)),
    )
    return model


class JobsPage(BaseModel):
    jobs: list[Job] = Field(description="Jobs, newest first, payloads masked.")
    next_token: str | None = Field(
        description="Pass it back as page_token, with the same filters, for the next page; "
        "null: no more jobs match."
    )


class QueueCounts(BaseModel):
    """SQS's approximate counts of one queue, and whether its worker is paused."""

    queue: str
    waiting: int
    in_flight: int
    delayed: int
    dead_letters: int | None = Field(description="Its DLQ's messages; null: no DLQ.")
    paused: bool | None = Field(description="null: no worker's mapping found.")
    oldest_age_seconds: float | None = Field(
        default=None, description="Age of its oldest message (CloudWatch); null: unknown."
    )


class StateCounts(BaseModel):
    scheduled: int
    retrying: int
    failed: int
    cancelled: int


class Queues(BaseModel):
    queues: list[QueueCounts]
    states: StateCounts = Field(description="Jobs per off-happy-path state, all queues.")


class QueueHealth(BaseModel):
    queue: str
    waiting: int
    oldest_age_seconds: float | None = Field(description="null: unknown (no datapoint yet).")
    healthy: bool = Field(description="Its oldest message is not older than the threshold.")


class Health(BaseModel):
    healthy: bool
    max_age_seconds: float = Field(description="The threshold: jobs start within this.")
    queues: list[QueueHealth]


class BulkFilter(BaseModel):
    """Which jobs a bulk retry or cancel reaches: a filter, or `all`."""

    model_config = ConfigDict(extra="forbid")

    job_type: str | None = None
    queue: str | None = None
    id_prefix: str | None = Field(default=None, min_length=1)
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    all: bool = Field(default=False, description="Every matching job, with no filter given.")
    dry_run: bool = Field(default=False, description="Only say which jobs it would change.")


class Refusal(BaseModel):
    job_id: str
    reason: str


class BulkOutcome(BaseModel):
    matched: list[str]
    done: list[str]
    failed: list[Refusal]
    dry_run: bool


class QueueSwitch(BaseModel):
    queue: str
    paused: bool
    mappings: list[str] = Field(description="The state of each event source mapping.")


class DeadLetterOut(BaseModel):
    """A dead letter, not consumed by reading it; addresses masked."""

    message_id: str
    job_id: str | None
    job_type: str | None
    reason: str | None
    age_seconds: float
    receive_count: int
    body: str
    attributes: dict[str, str]


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_type: str | None = None
    reason_contains: str | None = Field(default=None, min_length=1)
    job_ids: list[str] | None = Field(default=None, min_length=1)
    limit: int | None = Field(default=None, ge=1, le=1000)
    dry_run: bool = False


class RedriveOutcome(BaseModel):
    queue: str
    moved: int | None = Field(description="null: an asynchronous move task is moving them.")
    task_handle: str | None
    matched: int | None
    left: int | None
    dry_run: bool


class Purge(BaseModel):
    queue: str
    purging: bool = Field(description="SQS deletes the messages within a minute.")
