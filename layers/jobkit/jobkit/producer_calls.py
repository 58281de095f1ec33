"""The producer calls of `jobkit.client.Jobkit`: enqueue one job or a batch. Everything is
validated before anything is written or sent; a job whose message cannot be sent is marked
failed in the log."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from jobkit import queues, schedules
from jobkit.errors import (
    EnqueueError,
    EnvelopeTooLargeError,
    InvalidScheduleError,
    JobkitError,
    ServiceError,
)
from jobkit.jobs import JobType, Tracking, get_job_type
from jobkit.models import (
    SQS_MAX_DELAY_SECONDS,
    SQS_MAX_MESSAGE_BYTES,
    Envelope,
    Job,
    check_job_id,
    utcnow,
)
from jobkit.redact import redact
from jobkit.settings import Settings
from jobkit.store import Item, JobLog, job_from_item, new_item

Delay = float | int | timedelta
# The furthest ahead a job may be due. Later than this is a recurring schedule's work (or an
# enqueue nearer the time): a job log entry a year old is rarely what anyone meant.
MAX_DELAY = timedelta(days=365)


@dataclass(frozen=True)
class EnqueueRequest:
    """One job for `enqueue_many`."""

    job_type: JobType | str
    payload: BaseModel | dict[str, Any]
    job_id: str | None = None
    delay: Delay | None = None
    run_at: datetime | None = None


@dataclass(frozen=True)
class EnqueueOutcome:
    """What became of one request of `enqueue_many`, in request order."""

    index: int
    job_id: str | None
    job: Job | None = None
    created: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class EnqueueManyResult:
    outcomes: list[EnqueueOutcome]

    @property
    def created(self) -> list[Job]:
        return [o.job for o in self.outcomes if o.created and o.job]

    @property
    def existing(self) -> list[Job]:
        return [o.job for o in self.outcomes if o.ok and not o.created and o.job]

    @property
    def failed(self) -> list[EnqueueOutcome]:
        return [o for o in self.outcomes if not o.ok]


@dataclass(frozen=True)
class _Prepared:
    job_type: JobType
    envelope: Envelope
    body: str
    delay_seconds: int  # SQS DelaySeconds, for jobs due within 15 minutes
    due: datetime | None = None  # None: run now
    schedule: str | None = None  # Scheduler schedule name, for jobs due later than that

    @property
    def logged(self) -> bool:
        """Is the job written to the log at enqueue (tracking `full`)? `light` and `failures`
        jobs are only sent: a worker writes them, if at all."""
        return self.job_type.tracking is Tracking.FULL


def due_time(delay: Delay | None, run_at: datetime | None, now: datetime) -> datetime | None:
    """When a job may run: None for now. A time in the past runs now; one more than
    `MAX_DELAY` ahead, a delay that is not a finite number of seconds, is an error."""
    if delay is not None and run_at is not None:
        raise InvalidScheduleError("give either delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidScheduleError(f"run_at is a datetime, not {type(run_at).__name__}")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidScheduleError(
                "run_at must be timezone-aware (e.g. datetime(..., tzinfo=UTC)); "
                "a naive datetime is ambiguous"
            )
        if run_at - now > MAX_DELAY:
            raise InvalidScheduleError(
                f"run_at is more than {MAX_DELAY.days} days ahead: use a recurring schedule, "
                "or enqueue it nearer the time"
            )
        return run_at if run_at > now else None
    if delay is None:
        return None
    seconds = _seconds(delay)
    if seconds > MAX_DELAY.total_seconds():
        raise InvalidScheduleError(
            f"delay of {seconds:g} s is more than {MAX_DELAY.days} days: use a recurring "
            "schedule, or enqueue it nearer the time"
        )
    return now + timedelta(seconds=seconds) if seconds > 0 else None


def _seconds(delay: object) -> float:
    """A delay as seconds: a finite, non-negative number or timedelta, else an error."""
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidScheduleError(
            f"delay is seconds (a number) or a timedelta, not {type(delay).__name__}"
        )
    if not math.isfinite(seconds):
        raise InvalidScheduleError(f"delay must be a finite number of seconds, not {seconds}")
    if seconds < 0:
        raise InvalidScheduleError(f"delay must not be negative (got {seconds:g} s)")
    return seconds


class ProducerCalls:
    """`Jobkit`'s enqueue calls."""

    settings: Settings
    log: JobLog

    def _prepare(
        self,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        job_id: str | None,
        delay: Delay | None,
        run_at: datetime | None = None,
    ) -> _Prepared:
        """Validate everything before anything is written or sent."""
        if job_id is not None:
            check_job_id(job_id)
        jt = get_job_type(job_type)
        model = jt.validate(payload)
        now = utcnow()
        due = due_time(delay, run_at, now)
        self.settings.queue_url_of(jt.queue)
        delay_seconds, schedule = 0, None
        if due is not None:
            wait = (due - now).total_seconds()
            if wait <= SQS_MAX_DELAY_SECONDS:
                delay_seconds = math.ceil(wait)
            else:
                self.settings.require_scheduler()
        envelope = Envelope(
            id=uuid.uuid4().hex if job_id is None else job_id,
            type=jt.name,
            payload=model.model_dump(mode="json"),
            enqueued_at=now,
            not_before=due,
        )
        if due is not None and not delay_seconds:
            schedule = schedules.schedule_name(envelope.id)
        body = envelope.to_json()
        size = len(body.encode())
        if size > SQS_MAX_MESSAGE_BYTES:
            raise EnvelopeTooLargeError(
                f"{jt.name} job is {size:,} bytes, over the SQS limit of "
                f"{SQS_MAX_MESSAGE_BYTES:,}: keep payloads to references (ids)"
            )
        return _Prepared(jt, envelope, body, delay_seconds, due, schedule)

    def _item(self, prepared: _Prepared) -> Item:
        return new_item(
            prepared.envelope.id,
            prepared.job_type.name,
            prepared.job_type.queue,
            prepared.job_type.max_attempts,
            prepared.envelope.payload,
            now=prepared.envelope.enqueued_at,
            run_at=prepared.due,
            schedule=prepared.schedule,
        )

    def _unlogged(self, prepared: _Prepared) -> Job:
        """The job as sent, not written (tracking `light` or `failures`): not in the log."""
        return job_from_item(self._item(prepared))

    def _schedule(self, prepared: _Prepared) -> None:
        """Have Scheduler send the job to its queue shortly before it is due."""
        group, role = self.settings.require_scheduler()
        assert prepared.due is not None and prepared.schedule is not None
        queue_url = self.settings.queue_url_of(prepared.job_type.queue)
        dlq_url = self.settings.dead_letter_queue_url_or_none(prepared.job_type.queue)
        schedules.create_at(
            prepared.schedule,
            group,
            prepared.due - timedelta(seconds=schedules.FIRE_EARLY_SECONDS),
            queues.arn_of(queue_url),
            role,
            prepared.body,
            queues.arn_of(dlq_url) if dlq_url else None,
        )

    def _dispatch(self, prepared: _Prepared) -> None:
        if prepared.schedule:
            self._schedule(prepared)
        else:
            queues.send(
                self.settings.queue_url_of(prepared.job_type.queue),
                prepared.body,
                prepared.delay_seconds,
            )

    def enqueue(
        self,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        *,
        job_id: str | None = None,
        delay: Delay | None = None,
        run_at: datetime | None = None,
    ) -> Job:
        """Validate, record and send one job. The same `job_id` twice returns the first job
        and sends nothing. A type whose tracking is `light` or `failures` is only sent, not
        recorded: every call sends a message and returns the job as sent (a repeated id is
        dropped by the worker's claim, not here).

        `delay` (seconds or timedelta) or `run_at` (timezone-aware) make it `scheduled`: due
        within 15 minutes it waits in SQS (DelaySeconds); later, a one-time Scheduler
        schedule sends it shortly before it is due and the worker holds it to the second.
        """
        return self.enqueue_created(job_type, payload, job_id=job_id, delay=delay, run_at=run_at)[0]

    def enqueue_created(
        self,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        *,
        job_id: str | None = None,
        delay: Delay | None = None,
        run_at: datetime | None = None,
    ) -> tuple[Job, bool]:
        """`enqueue`, and whether this call created the job (False: the id was in the log, the
        job returned is that one, nothing was sent). The HTTP API answers 201 or 200 by it."""
        prepared = self._prepare(job_type, payload, job_id, delay, run_at)
        if prepared.logged:
            created, job = self.log.put_new(self._item(prepared))
            if not created:
                return job, False
        else:
            job = self._unlogged(prepared)
        try:
            self._dispatch(prepared)
        except Exception as exc:
            reason = redact(f"enqueue failed: could not send to queue: {exc}")
            self._mark_send_failed(prepared, job, reason)
            raise EnqueueError(f"job {job.id}: {reason}") from exc
        return job, True

    def _mark_send_failed(self, prepared: _Prepared, job: Job, reason: str) -> None:
        """Mark a logged job whose message never left as failed; an unlogged one (tracking
        `light`, `failures`) has no item to mark: the error is all the caller gets."""
        if prepared.logged:
            self.log.mark_send_failed(job, reason, prepared.job_type.retention.failed)

    def enqueue_many(self, requests: Iterable[EnqueueRequest]) -> EnqueueManyResult:
        """Enqueue a batch, with `enqueue`'s semantics for every request.

        Each job is one conditional PutItem (written in parallel: the same write units as
        BatchWriteItem, which has no conditions), then its messages go out with
        SendMessageBatch (10 a call). Every request gets an outcome, in order: a bad request
        fails alone; an id that exists comes back as that job, untouched; a job whose message
        could not be sent is marked failed in the log and reported. Repeats of an id inside
        the batch share the outcome of its first occurrence. Jobs of a type with tracking
        `light` or `failures` are not written: each counts as created and is sent.
        """
        outcomes: dict[int, EnqueueOutcome] = {}
        prepared: dict[int, _Prepared] = {}
        first_of: dict[str, int] = {}
        repeats: dict[int, int] = {}  # index -> index of the id's first occurrence
        for index, request in enumerate(requests):
            try:
                p = self._prepare(
                    request.job_type, request.payload, request.job_id, request.delay, request.run_at
                )
            except JobkitError as exc:
                outcomes[index] = EnqueueOutcome(index, request.job_id, error=str(exc))
                continue
            if p.envelope.id in first_of:
                repeats[index] = first_of[p.envelope.id]
                continue
            first_of[p.envelope.id] = index
            prepared[index] = p

        order = [i for i, p in prepared.items() if p.logged]
        puts = self.log.put_new_many([self._item(prepared[i]) for i in order])
        written = dict(zip(order, puts, strict=True))
        created: dict[int, tuple[_Prepared, Job]] = {}
        for index, p in prepared.items():
            put = written[index] if p.logged else (True, self._unlogged(p))
            if isinstance(put, ServiceError):
                reason = redact(f"job log write failed, not sent: {put}")
                outcomes[index] = EnqueueOutcome(index, p.envelope.id, error=reason)
            elif put[0]:
                created[index] = (p, put[1])
            else:
                outcomes[index] = EnqueueOutcome(index, p.envelope.id, put[1])
        outcomes.update(self._dispatch_many(created))
        for index, first in repeats.items():
            o = outcomes[first]
            outcomes[index] = EnqueueOutcome(index, o.job_id, o.job, False, o.error)
        return EnqueueManyResult([outcomes[i] for i in sorted(outcomes)])

    def _dispatch_many(
        self, created: dict[int, tuple[_Prepared, Job]]
    ) -> dict[int, EnqueueOutcome]:
        """Send (or schedule) the messages of the jobs just written; a job whose message
        cannot be sent is marked failed in the log."""
        outcomes: dict[int, EnqueueOutcome] = {}
        failures: dict[int, str] = {}
        by_queue: dict[str, list[queues.Outgoing]] = {}
        for index, (p, _) in created.items():
            if not p.schedule:
                by_queue.setdefault(p.job_type.queue, []).append(
                    queues.Outgoing(str(index), p.body, p.delay_seconds)
                )
                continue
            try:
                self._schedule(p)
            except Exception as exc:
                failures[index] = f"could not create its schedule: {exc}"
        for queue, messages in by_queue.items():
            try:
                failed = queues.send_many(self.settings.queue_url_of(queue), messages)
            except Exception as exc:
                failed = {m.key: str(exc) for m in messages}
            failures.update(
                {int(key): f"could not send to queue: {why}" for key, why in failed.items()}
            )
        for index, (p, job) in created.items():
            if index in failures:
                reason = redact(f"enqueue failed: {failures[index]}")
                self._mark_send_failed(p, job, reason)
                outcomes[index] = EnqueueOutcome(index, job.id, error=reason)
            else:
                outcomes[index] = EnqueueOutcome(index, job.id, job, created=True)
        return outcomes
