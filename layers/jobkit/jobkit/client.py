"""The producer API: enqueue jobs, read the job log, retry and redrive failures."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from jobkit import queues, recurring, schedules
from jobkit.errors import (
    EnqueueError,
    EnvelopeTooLargeError,
    InvalidScheduleError,
    InvalidStateError,
    JobkitError,
    JobNotFoundError,
    ScheduleNotFoundError,
)
from jobkit.jobs import JobType, Retention, get_job_type, registered_job_types
from jobkit.models import (
    SQS_MAX_DELAY_SECONDS,
    SQS_MAX_MESSAGE_BYTES,
    Envelope,
    Job,
    JobState,
    utcnow,
)
from jobkit.recurring import RecurringSchedule
from jobkit.redact import redact
from jobkit.settings import Settings, get_settings
from jobkit.store import BY_STATE, BY_TYPE, INDEXED_STATES, Item, JobLog, new_item

Delay = float | int | timedelta


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
class RedriveResult:
    queue: str
    moved: int | None  # None: an asynchronous StartMessageMoveTask is moving them
    task_handle: str | None = None


@dataclass(frozen=True)
class _Prepared:
    job_type: JobType
    envelope: Envelope
    body: str
    delay_seconds: int  # SQS DelaySeconds, for jobs due within 15 minutes
    given_id: bool  # caller-chosen ids may exist already; generated ones are new
    due: datetime | None = None  # None: run now
    schedule: str | None = None  # Scheduler schedule name, for jobs due later than that


def due_time(delay: Delay | None, run_at: datetime | None, now: datetime) -> datetime | None:
    """When a job may run: None for now. A time in the past runs now."""
    if delay is not None and run_at is not None:
        raise InvalidScheduleError("give either delay or run_at, not both")
    if run_at is not None:
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise InvalidScheduleError(
                "run_at must be timezone-aware (e.g. datetime(..., tzinfo=UTC)); "
                "a naive datetime is ambiguous"
            )
        return run_at if run_at > now else None
    if delay is None:
        return None
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if seconds < 0:
        raise InvalidScheduleError(f"delay must not be negative (got {seconds:g} s)")
    return now + timedelta(seconds=seconds) if seconds > 0 else None


class Jobkit:
    """A producer's handle on the stack. Cheap to create; clients are shared per process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.log = JobLog(self.settings.require_table())

    # -- enqueue ---------------------------------------------------------------------------

    def _prepare(
        self,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        job_id: str | None,
        delay: Delay | None,
        run_at: datetime | None = None,
    ) -> _Prepared:
        """Validate everything before anything is written or sent."""
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
            id=job_id or uuid.uuid4().hex,
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
        return _Prepared(jt, envelope, body, delay_seconds, job_id is not None, due, schedule)

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

    def _schedule(self, prepared: _Prepared) -> None:
        """Have Scheduler send the job to its queue shortly before it is due."""
        group, role = self.settings.require_scheduler()
        assert prepared.due is not None and prepared.schedule is not None
        queue_url = self.settings.queue_url_of(prepared.job_type.queue)
        dlq_url = self.settings.dead_letter_queues.get(prepared.job_type.queue)
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
        and sends nothing.

        `delay` (seconds or timedelta) or `run_at` (timezone-aware) make it `scheduled`: due
        within 15 minutes it waits in SQS (DelaySeconds); later, a one-time Scheduler
        schedule sends it shortly before it is due and the worker holds it to the second.
        """
        prepared = self._prepare(job_type, payload, job_id, delay, run_at)
        created, job = self.log.put_new(self._item(prepared))
        if not created:
            return job
        try:
            self._dispatch(prepared)
        except Exception as exc:
            reason = redact(f"enqueue failed: could not send to queue: {exc}")
            self.log.mark_send_failed(job.id, reason, prepared.job_type.retention.failed)
            raise EnqueueError(f"job {job.id}: {reason}") from exc
        return job

    def enqueue_many(self, requests: Iterable[EnqueueRequest]) -> EnqueueManyResult:
        """Enqueue a batch: BatchWriteItem (25 a call) and SendMessageBatch (10 a call).

        Every request gets an outcome: invalid ones fail alone, ids that already exist come
        back as existing jobs, writes and sends that keep failing are reported per job (and a
        job whose message could not be sent is marked failed in the log). BatchWriteItem has no
        conditions, so caller-given ids are looked up first; two concurrent batches with the
        same new id can both send it, and the worker's claim still runs it once.
        """
        outcomes: dict[int, EnqueueOutcome] = {}
        prepared: dict[int, _Prepared] = {}
        first_of: dict[str, int] = {}
        for index, request in enumerate(requests):
            try:
                p = self._prepare(
                    request.job_type, request.payload, request.job_id, request.delay, request.run_at
                )
            except JobkitError as exc:
                outcomes[index] = EnqueueOutcome(index, request.job_id, error=str(exc))
                continue
            if p.envelope.id in first_of:
                outcomes[index] = EnqueueOutcome(index, p.envelope.id)  # resolved below
                continue
            first_of[p.envelope.id] = index
            prepared[index] = p

        given = [p.envelope.id for p in prepared.values() if p.given_id]
        existing = self.log.get_many(given) if given else {}
        to_write = {i: p for i, p in prepared.items() if p.envelope.id not in existing}
        for index, p in prepared.items():
            if p.envelope.id in existing:
                outcomes[index] = EnqueueOutcome(index, p.envelope.id, existing[p.envelope.id])

        items = {i: self._item(p) for i, p in to_write.items()}
        unwritten = {str(it["pk"].get("S")) for it in self.log.put_many(list(items.values()))}
        by_queue: dict[str, list[queues.Outgoing]] = {}
        for index, p in to_write.items():
            if p.envelope.id in unwritten:
                outcomes[index] = EnqueueOutcome(
                    index, p.envelope.id, error="job log write kept failing (throttled); not sent"
                )
                continue
            if p.schedule:
                try:
                    self._schedule(p)
                except Exception as exc:
                    reason = redact(f"enqueue failed: could not create its schedule: {exc}")
                    self.log.mark_send_failed(p.envelope.id, reason, p.job_type.retention.failed)
                    outcomes[index] = EnqueueOutcome(index, p.envelope.id, error=reason)
                else:
                    outcomes[index] = EnqueueOutcome(index, p.envelope.id, self._job_of(p), True)
                continue
            by_queue.setdefault(p.job_type.queue, []).append(
                queues.Outgoing(str(index), p.body, p.delay_seconds)
            )
        for queue, messages in by_queue.items():
            try:
                failed = queues.send_many(self.settings.queue_url_of(queue), messages)
            except Exception as exc:
                failed = {m.key: str(exc) for m in messages}
            for message in messages:
                index = int(message.key)
                p = to_write[index]
                if message.key in failed:
                    reason = redact(
                        f"enqueue failed: could not send to queue: {failed[message.key]}"
                    )
                    self.log.mark_send_failed(p.envelope.id, reason, p.job_type.retention.failed)
                    outcomes[index] = EnqueueOutcome(index, p.envelope.id, error=reason)
                else:
                    job = self._job_of(p)
                    outcomes[index] = EnqueueOutcome(index, p.envelope.id, job, created=True)

        # Repeats inside the batch share the outcome of their first occurrence.
        for index, outcome in list(outcomes.items()):
            if outcome.job is None and outcome.error is None and outcome.job_id in first_of:
                first = outcomes[first_of[outcome.job_id]]
                outcomes[index] = EnqueueOutcome(
                    index, outcome.job_id, first.job, False, first.error
                )
        return EnqueueManyResult([outcomes[i] for i in sorted(outcomes)])

    def _job_of(self, p: _Prepared) -> Job:
        now = p.envelope.enqueued_at
        return Job(
            id=p.envelope.id,
            type=p.job_type.name,
            queue=p.job_type.queue,
            state=JobState.SCHEDULED if p.due else JobState.QUEUED,
            max_attempts=p.job_type.max_attempts,
            created_at=now,
            updated_at=now,
            payload=p.envelope.payload,
            run_at=p.due,
        )

    # -- read ------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        """The job as the log has it now (a consistent read), or None."""
        return self.log.get(job_id)

    def list_jobs(
        self,
        state: JobState | str | None = None,
        job_type: JobType | str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first. Uses the `by_state` index for off-happy-path states and the `by_type`
        index otherwise; never a Scan. Listing queued, running or succeeded jobs without a type
        walks the types declared in this process."""
        wanted = JobState(state) if state is not None else None
        type_name = get_job_type(job_type).name if job_type is not None else None
        if wanted is not None and wanted in INDEXED_STATES:
            keys = self.log.query_index(
                BY_STATE, wanted.value, limit if not type_name else limit * 10
            )
        else:
            names = [type_name] if type_name else sorted(registered_job_types())
            fetch = limit if wanted is None else limit * 10
            keys = sorted(
                (k for name in names for k in self.log.query_index(BY_TYPE, name, fetch)),
                reverse=True,
            )
        jobs = self.log.get_many(job_id for _, job_id in keys)
        ordered = [jobs[job_id] for _, job_id in keys if job_id in jobs]
        selected = [
            j
            for j in ordered
            if (wanted is None or j.state == wanted) and (type_name is None or j.type == type_name)
        ]
        return selected[:limit]

    def cancel(self, job_id: str) -> Job:
        """Cancel a scheduled, queued or retrying job (deleting its schedule, if any). A
        worker never runs a cancelled job; a running or finished one cannot be cancelled."""
        job = self.log.get(job_id)  # for its type's retention; cancels are rare
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job log")
        job_type = registered_job_types().get(job.type)
        retention = (job_type.retention if job_type else Retention()).cancelled
        done, before, schedule = self.log.cancel(job_id, retention)
        if before is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job log")
        if not done:
            raise InvalidStateError(
                f"job {job_id} is {before.state.value}: only a scheduled, queued or retrying "
                "job can be cancelled"
            )
        if schedule:
            schedules.delete(schedule, self.settings.require_scheduler()[0])
        return before.model_copy(update={"state": JobState.CANCELLED})

    # -- recurring jobs ----------------------------------------------------------------------

    def schedule(
        self,
        name: str,
        cron: str,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        *,
        timezone: str = "UTC",
        description: str = "",
        enabled: bool = True,
    ) -> RecurringSchedule:
        """Run a job on a cron or rate schedule, in a timezone; the same name again updates it.

        `cron` is AWS's six-field form, with or without `cron(...)` (`"0 2 * * ? *"`: 02:00
        every day), or `rate(...)`. Each run's job id is `<name>@<scheduled time, UTC>`, so a
        run that Scheduler fires twice runs once. Everything is validated before any call.
        """
        recurring.check_name(name)
        expression = recurring.normalize(cron, timezone)
        jt = get_job_type(job_type)
        body = recurring.target_input(name, jt.name, jt.validate(payload).model_dump(mode="json"))
        group, role = self.settings.require_recurring()
        queue_url = self.settings.queue_url_of(jt.queue)
        dlq_url = self.settings.dead_letter_queues.get(jt.queue)
        definition = schedules.put_recurring(
            name,
            group,
            expression,
            timezone,
            queues.arn_of(queue_url),
            role,
            body,
            queues.arn_of(dlq_url) if dlq_url else None,
            description or f"jobkit: {jt.name}",
            enabled,
        )
        return recurring.from_definition(definition, utcnow())

    def get_schedule(self, name: str) -> RecurringSchedule:
        definition = schedules.get(name, self.settings.require_recurring()[0])
        if definition is None:
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
        return recurring.from_definition(definition, utcnow())

    def list_schedules(self) -> list[RecurringSchedule]:
        """Every recurring schedule, by name (one GetSchedule each: listing is rare)."""
        group = self.settings.require_recurring()[0]
        found = (schedules.get(name, group) for name in schedules.names(group))
        return [recurring.from_definition(d, utcnow()) for d in found if d is not None]

    def pause_schedule(self, name: str) -> RecurringSchedule:
        """Stop a schedule firing until it is resumed (runs missed meanwhile do not happen)."""
        return self._set_state(name, enabled=False)

    def resume_schedule(self, name: str) -> RecurringSchedule:
        return self._set_state(name, enabled=True)

    def _set_state(self, name: str, enabled: bool) -> RecurringSchedule:
        definition = schedules.get(name, self.settings.require_recurring()[0])
        if definition is None:
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
        schedules.set_state(definition, enabled)
        state = "ENABLED" if enabled else "DISABLED"
        return recurring.from_definition({**definition, "State": state}, utcnow())

    def delete_schedule(self, name: str) -> None:
        """Delete a recurring schedule; jobs of runs already fired are not affected."""
        if not schedules.delete(name, self.settings.require_recurring()[0]):
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")

    # -- failures --------------------------------------------------------------------------

    def retry(self, job_id: str) -> Job:
        """Run a failed job again, with fresh attempts."""
        job = self.log.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job log")
        if job.state != JobState.FAILED:
            raise InvalidStateError(
                f"job {job_id} is {job.state.value}; only a failed job can be retried"
            )
        from botocore.exceptions import ClientError

        try:
            job = self.log.requeue(job_id, job.generation)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise InvalidStateError(
                    f"job {job_id} changed while retrying it; look again"
                ) from None
            raise
        jt = get_job_type(job.type)
        envelope = Envelope(id=job.id, type=job.type, payload=job.payload, enqueued_at=utcnow())
        try:
            queues.send(self.settings.queue_url_of(jt.queue), envelope.to_json())
        except Exception as exc:
            reason = redact(f"retry failed: could not send to queue: {exc}")
            self.log.mark_send_failed(job.id, reason, jt.retention.failed)
            raise EnqueueError(f"job {job.id}: {reason}") from exc
        return job

    def redrive(self, queue: str) -> RedriveResult:
        """Move a queue's dead letters back to it; each job starts again with fresh attempts.

        On AWS this is one StartMessageMoveTask (the worker resets a job when its dead letter
        comes back). Where that API is missing (moto), messages are moved here by
        receive-send-delete, and the jobs are reset in the log as they are moved.
        """
        queue_url = self.settings.queue_url_of(queue)
        dlq_url = self.settings.dead_letter_queue_url_of(queue)
        handle = queues.start_move_task(queues.queue_arn(dlq_url), queues.queue_arn(queue_url))
        if handle is not None:
            return RedriveResult(queue, None, handle)
        moved = 0
        while batch := queues.receive(dlq_url, wait_seconds=0):
            outgoing = [queues.Outgoing(str(i), self._revive(m.body)) for i, m in enumerate(batch)]
            failed = queues.send_many(queue_url, outgoing)
            sent = [m.receipt_handle for i, m in enumerate(batch) if str(i) not in failed]
            queues.delete_many(dlq_url, sent)
            moved += len(sent)
            if failed:
                raise EnqueueError(
                    f"redrive stopped: {len(failed)} messages could not be sent back"
                )
        return RedriveResult(queue, moved)

    def _revive(self, body: str) -> str:
        """Reset the job of a dead letter to queued and strip the dead-letter mark."""
        from botocore.exceptions import ClientError
        from pydantic import ValidationError

        try:
            envelope = Envelope.model_validate_json(body)
        except ValidationError:
            return body  # not a job envelope: moved back as it is, as SQS would
        if envelope.dead_letter is not None:
            try:
                self.log.requeue(envelope.id, envelope.dead_letter.generation)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        return envelope.model_copy(update={"dead_letter": None}).to_json()


_default: Jobkit | None = None


def default_client() -> Jobkit:
    """The process-wide client built from the environment's settings."""
    global _default
    if _default is None:
        _default = Jobkit()
    return _default
