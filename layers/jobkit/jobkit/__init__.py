"""jobkit: serverless background jobs for AWS.

from jobkit import enqueue
from jobkit_apps.email import SEND_INVITE

job = enqueue(SEND_INVITE, {"to": "ada@example.com", ...}, job_id="invite-42")
"""

from __future__ import annotations

from typing import Any

from jobkit.client import EnqueueManyResult, EnqueueRequest, Jobkit, RedriveResult, default_client
from jobkit.errors import (
    ConfigurationError,
    EnqueueError,
    EnvelopeTooLargeError,
    InvalidJobIdError,
    InvalidRequestError,
    InvalidScheduleError,
    InvalidStateError,
    JobkitError,
    JobNotFoundError,
    JobValidationError,
    LeaseLostError,
    OutcomeUnknownError,
    PermanentError,
    ScheduleNotFoundError,
    ServiceError,
    TransientError,
    UnknownJobTypeError,
)
from jobkit.job_listing import JobsPage
from jobkit.jobs import Backoff, Guarantee, JobType, Retention, Tracking
from jobkit.models import Job, JobState
from jobkit.recurring import RecurringSchedule

__all__ = [
    "Backoff",
    "ConfigurationError",
    "EnqueueError",
    "EnqueueManyResult",
    "EnqueueRequest",
    "EnvelopeTooLargeError",
    "Guarantee",
    "InvalidJobIdError",
    "InvalidRequestError",
    "InvalidScheduleError",
    "InvalidStateError",
    "Job",
    "JobNotFoundError",
    "JobState",
    "JobType",
    "JobValidationError",
    "Jobkit",
    "JobkitError",
    "JobsPage",
    "LeaseLostError",
    "OutcomeUnknownError",
    "PermanentError",
    "RecurringSchedule",
    "RedriveResult",
    "Retention",
    "ScheduleNotFoundError",
    "ServiceError",
    "Tracking",
    "TransientError",
    "UnknownJobTypeError",
    "cancel",
    "delete_schedule",
    "enqueue",
    "enqueue_many",
    "get_job",
    "list_jobs",
    "list_schedules",
    "pause_schedule",
    "redrive",
    "resume_schedule",
    "retry",
    "run_now",
    "schedule",
]


def enqueue(job_type: JobType | str, payload: Any, **kwargs: Any) -> Job:
    """`Jobkit.enqueue` on the client configured from the environment."""
    return default_client().enqueue(job_type, payload, **kwargs)


def enqueue_many(requests: Any) -> EnqueueManyResult:
    return default_client().enqueue_many(requests)


def get_job(job_id: str) -> Job | None:
    return default_client().get_job(job_id)


def list_jobs(
    state: JobState | str | None = None, job_type: JobType | str | None = None, limit: int = 50
) -> list[Job]:
    return default_client().list_jobs(state, job_type, limit)


def cancel(job_id: str) -> Job:
    return default_client().cancel(job_id)


def retry(job_id: str) -> Job:
    return default_client().retry(job_id)


def run_now(job_id: str) -> Job:
    return default_client().run_now(job_id)


def redrive(queue: str) -> RedriveResult:
    return default_client().redrive(queue)


def schedule(
    name: str, cron: str, job_type: JobType | str, payload: Any, **kwargs: Any
) -> RecurringSchedule:
    """`Jobkit.schedule`: run a job on a cron or rate schedule."""
    return default_client().schedule(name, cron, job_type, payload, **kwargs)


def list_schedules() -> list[RecurringSchedule]:
    return default_client().list_schedules()


def pause_schedule(name: str) -> RecurringSchedule:
    return default_client().pause_schedule(name)


def resume_schedule(name: str) -> RecurringSchedule:
    return default_client().resume_schedule(name)


def delete_schedule(name: str) -> None:
    default_client().delete_schedule(name)
