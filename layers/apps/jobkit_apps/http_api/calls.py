"""What each route does, as plain functions of a `Jobkit` client: the routes (`routes_jobs`,
`routes_queues`) only parse the request and call these. Every job, dead letter and schedule
shown has its email addresses masked, as `jobkit status` shows them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jobkit.admin_calls import BulkResult
from jobkit.client import Jobkit
from jobkit.dead_letter_calls import DeadLetter
from jobkit.errors import InvalidRequestError
from jobkit.jobs import JobType, registered_job_types
from jobkit.models import Job, JobState
from jobkit.recurring import RecurringSchedule
from jobkit.redact import redact
from jobkit_apps.http_api.errors import DeadLetterNotFoundError, UnknownQueueError
from jobkit_apps.http_api.models import (
    BulkFilter,
    BulkOutcome,
    DeadLetterOut,
    EnqueueFields,
    Health,
    JobsPage,
    QueueCounts,
    QueueHealth,
    Queues,
    QueueSwitch,
    RedriveOutcome,
    RedriveRequest,
    Refusal,
    StateCounts,
)


def _masked(text: str) -> Any:
    """JSON text with every email address masked (the mask keeps it valid JSON)."""
    return json.loads(redact(text, limit=len(text)))


def masked_job(job: Job) -> Job:
    return Job.model_validate(_masked(job.model_dump_json()))


def masked_schedule(schedule: RecurringSchedule) -> RecurringSchedule:
    return RecurringSchedule.model_validate(_masked(schedule.model_dump_json()))


def enqueue(client: Jobkit, job_type: JobType, body: EnqueueFields) -> tuple[Job, bool]:
    """Enqueue one job from a request body; (the job, whether this call created it)."""
    payload = body.payload  # type: ignore[attr-defined]  # each type's body adds its payload
    job, created = client.enqueue_created(
        job_type, payload, job_id=body.job_id, delay=body.delay_seconds, run_at=body.run_at
    )
    return masked_job(job), created


def find_jobs(
    client: Jobkit,
    state: JobState | None,
    job_type: str | None,
    queue: str | None,
    limit: int,
    times: dict[str, datetime | None],
    id_prefix: str | None = None,
    page_token: str | None = None,
) -> JobsPage:
    """One page of `Jobkit.find_jobs` (`times`: its created_/updated_ after/before bounds)."""
    page = client.find_jobs(
        state, job_type, limit, queue, id_prefix=id_prefix, page_token=page_token, **times
    )
    return JobsPage(jobs=[masked_job(job) for job in page.jobs], next_token=page.next_token)


def bulk(client: Jobkit, action: str, where: BulkFilter) -> BulkOutcome:
    """`retry_many` or `cancel_many` (`action`) over the jobs `where` matches."""
    narrowed = where.job_type or where.queue or where.id_prefix
    if not (where.all or narrowed or where.created_after or where.created_before):
        raise InvalidRequestError(
            "give a filter (job_type, queue, id_prefix, created_after, created_before) or all: true"
        )
    many = client.retry_many if action == "retry" else client.cancel_many
    result: BulkResult = many(
        where.job_type,
        queue=where.queue,
        id_prefix=where.id_prefix,
        created_after=where.created_after,
        created_before=where.created_before,
        limit=where.limit,
        dry_run=where.dry_run,
    )
    return BulkOutcome(
        matched=result.matched,
        done=result.done,
        failed=[Refusal(job_id=job_id, reason=redact(why)) for job_id, why in result.failed],
        dry_run=result.dry_run,
    )


def known_queue(client: Jobkit, queue: str) -> str:
    """`queue` if a declared job type runs on it or the settings name it, else a 404."""
    known = {t.queue for t in registered_job_types().values()} | set(client.settings.queues)
    if queue not in known:
        names = ", ".join(sorted(known)) or "none"
        raise UnknownQueueError(f"unknown queue {queue!r} (known: {names})")
    return queue


def queues(client: Jobkit) -> Queues:
    found = client.queue_overview()
    counts = client.state_counts()
    return Queues(
        queues=[QueueCounts.model_validate(q, from_attributes=True) for q in found],
        states=StateCounts.model_validate(counts, from_attributes=True),
    )


def switch(client: Jobkit, queue: str, *, paused: bool) -> QueueSwitch:
    """Pause or resume a queue's worker (its event source mappings)."""
    known_queue(client, queue)
    states = client.pause_queue(queue) if paused else client.resume_queue(queue)
    return QueueSwitch(queue=queue, paused=paused, mappings=states)


def health(client: Jobkit, max_age_seconds: float | None) -> Health:
    """Each queue's backlog and oldest message against the threshold (the settings' unless
    given). A queue whose age is unknown (no CloudWatch datapoint yet) counts as healthy."""
    threshold = max_age_seconds or client.settings.health_max_age_seconds
    rows = [
        QueueHealth(
            queue=q.queue,
            waiting=q.waiting,
            oldest_age_seconds=q.oldest_age_seconds,
            healthy=q.oldest_age_seconds is None or q.oldest_age_seconds <= threshold,
        )
        for q in client.queue_overview()
    ]
    return Health(healthy=all(row.healthy for row in rows), max_age_seconds=threshold, queues=rows)


def _dead_letter(letter: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut.model_validate(letter, from_attributes=True)


def dead_letters(client: Jobkit, queue: str, limit: int) -> list[DeadLetterOut]:
    known_queue(client, queue)
    return [_dead_letter(letter) for letter in client.dead_letters(queue, limit)]


def dead_letter(client: Jobkit, queue: str, message_id: str) -> DeadLetterOut:
    known_queue(client, queue)
    found = client.find_dead_letter(queue, message_id)
    if found is None:
        raise DeadLetterNotFoundError(
            f"no message {message_id!r} in the dead-letter queue of {queue!r}"
        )
    return _dead_letter(found)


def redrive(client: Jobkit, queue: str, request: RedriveRequest) -> RedriveOutcome:
    known_queue(client, queue)
    result = client.redrive(
        queue,
        job_type=request.job_type,
        reason_contains=request.reason_contains,
        job_ids=request.job_ids,
        limit=request.limit,
        dry_run=request.dry_run,
    )
    return RedriveOutcome.model_validate(result, from_attributes=True)


def purge(client: Jobkit, queue: str) -> None:
    known_queue(client, queue)
    client.purge_dead_letters(queue)


def schedules(client: Jobkit) -> list[RecurringSchedule]:
    return [masked_schedule(s) for s in client.list_schedules()]
