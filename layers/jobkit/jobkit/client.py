"""The producer API: enqueue jobs, read the job log, retry and redrive failures."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from jobkit import aws, queues, recurring, schedules
from jobkit.errors import (
    EnqueueError,
    EnvelopeTooLargeError,
    InvalidRequestError,
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
    check_job_id,
    utcnow,
)
from jobkit.recurring import RecurringSchedule
from jobkit.redact import redact
from jobkit.settings import Settings, get_settings
from jobkit.store import BY_STATE, BY_TYPE, INDEXED_STATES, Item, JobLog, new_item

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
    due: datetime | None = None  # None: run now
    schedule: str | None = None  # Scheduler schedule name, for jobs due later than that


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

    @aws.service_errors
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
            self.log.mark_send_failed(job, reason, prepared.job_type.retention.failed)
            raise EnqueueError(f"job {job.id}: {reason}") from exc
        return job

    @aws.service_errors
    def enqueue_many(self, requests: Iterable[EnqueueRequest]) -> EnqueueManyResult:
        """Enqueue a batch, with `enqueue`'s semantics for every request.

        Each job is one conditional PutItem (written in parallel: the same write units as
        BatchWriteItem, which has no conditions), then its messages go out with
        SendMessageBatch (10 a call). Every request gets an outcome, in order: a bad request
        fails alone; an id that exists comes back as that job, untouched; a job whose message
        could not be sent is marked failed in the log and reported. Repeats of an id inside
        the batch share the outcome of its first occurrence.
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

        order = list(prepared)
        written = self.log.put_new_many([self._item(prepared[i]) for i in order])
        created: dict[int, tuple[_Prepared, Job]] = {}
        for index, put in zip(order, written, strict=True):
            p = prepared[index]
            if isinstance(put, Exception):
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
                self.log.mark_send_failed(job, reason, p.job_type.retention.failed)
                outcomes[index] = EnqueueOutcome(index, job.id, error=reason)
            else:
                outcomes[index] = EnqueueOutcome(index, job.id, job, created=True)
        return outcomes

    # -- read ------------------------------------------------------------------------------

    @aws.service_errors
    def get_job(self, job_id: str) -> Job | None:
        """The job as the log has it now (a consistent read), or None."""
        return self.log.get(check_job_id(job_id))

    @aws.service_errors
    def list_jobs(
        self,
        state: JobState | str | None = None,
        job_type: JobType | str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first. Uses the `by_state` index for off-happy-path states and the `by_type`
        index otherwise; never a Scan. Listing queued, running or succeeded jobs without a type
        walks the types declared in this process."""
        try:
            wanted = JobState(state) if state is not None else None
        except ValueError:
            known = ", ".join(s.value for s in JobState)
            raise InvalidRequestError(f"unknown state {state!r} (one of: {known})") from None
        if not isinstance(limit, int) or limit < 1:
            raise InvalidRequestError(f"limit is a positive whole number, not {limit!r}")
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

    @aws.service_errors
    def cancel(self, job_id: str) -> Job:
        """Cancel a scheduled, queued or retrying job (deleting its schedule, if any). A
        worker never runs a cancelled job; a running or finished one cannot be cancelled."""
        job = self.log.get(check_job_id(job_id))  # for its type's retention; cancels are rare
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

    @aws.service_errors
    def run_now(self, job_id: str) -> Job:
        """Run a scheduled (delayed) job now instead of at its due time: it becomes queued
        and its message goes out at once; its schedule, if it has one, is deleted. A message
        still waiting for the old due time finds the job taken and does nothing."""
        job = self.log.get(check_job_id(job_id))
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job log")
        jt = get_job_type(job.type)
        queue_url = self.settings.queue_url_of(jt.queue)
        done, before, schedule = self.log.release(job_id)
        if before is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job log")
        if not done:
            raise InvalidStateError(
                f"job {job_id} is {before.state.value}: only a scheduled job can be run now"
            )
        released = before.model_copy(update={"state": JobState.QUEUED, "run_at": utcnow()})
        self._send_or_fail(released, queue_url, jt, "run now")
        if schedule:
            schedules.delete(schedule, self.settings.require_scheduler()[0])
        return released

    # -- recurring jobs ----------------------------------------------------------------------

    @aws.service_errors
    def schedule(
        self,
        name: str,
        cron: str,
        job_type: JobType | str,
        payload: BaseModel | dict[str, Any],
        *,
        timezone: str = "UTC",
        description: str = "",
        enabled: bool | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> RecurringSchedule:
        """Run a job on a cron or rate schedule, in a timezone; the same name again updates it.

        `cron` is AWS's six-field form, with or without `cron(...)` (`"0 2 * * ? *"`: 02:00
        every day), or `rate(...)`. Each run's job id is `<name>@<scheduled time, UTC>`, so a
        run that Scheduler fires twice runs once.

        `enabled`: None keeps an existing schedule's state (declaring a paused schedule again
        does not resume it; a new one is enabled), True or False sets it. `start` and `end`
        (timezone-aware) bound the runs: none before the start, none after the end; a rate
        counts from its start, else from its creation. They belong to the declaration: left
        out, they are removed. A cron that never fires, or a start and end with no run between
        them, is refused. Everything is validated before anything is written.

        Requests: a new schedule is one CreateSchedule, and its answer needs no read (a rate
        counts from its creation, now). An existing one is that CreateSchedule refused, one
        GetSchedule (the state to keep, the creation a rate counts from, the start it has) and
        one UpdateSchedule.
        """
        now = utcnow()
        recurring.check_name(name)
        expression = recurring.normalize(cron, timezone, now)
        jt = get_job_type(job_type)
        body = recurring.target_input(name, jt.name, jt.validate(payload).model_dump(mode="json"))
        group, role = self.settings.require_recurring()
        queue_url = self.settings.queue_url_of(jt.queue)
        dlq_url = self.settings.dead_letter_queues.get(jt.queue)
        # A start already passed can only be the one the schedule has: read it first.
        existing = schedules.get(name, group) if recurring.start_passed(start, now) else None
        window = recurring.check_window(expression, timezone, start, end, now, existing)
        definition = schedules.recurring_definition(
            name,
            group,
            expression,
            timezone,
            queues.arn_of(queue_url),
            role,
            body,
            queues.arn_of(dlq_url) if dlq_url else None,
            description or f"jobkit: {jt.name}",
            *window,
        )
        made = None
        if existing is None:
            made = schedules.create_recurring(definition, enabled is not False)
        if made is None:  # it exists: update it
            existing = existing or schedules.get(name, group)
            if existing is None:
                raise JobkitError(f"schedule {name!r} was deleted meanwhile: declare it again")
            # Checked again against the schedule as it stands (its creation, its start).
            recurring.check_window(expression, timezone, start, end, now, existing)
            made = schedules.update_recurring(definition, enabled, existing)
        # A new schedule has no CreationDate here: it was created just now, so the next run
        # of a rate is counted from now, within the milliseconds of the call.
        return recurring.from_definition(made, utcnow())

    @aws.service_errors
    def get_schedule(self, name: str) -> RecurringSchedule:
        recurring.check_name(name)
        definition = schedules.get(name, self.settings.require_recurring()[0])
        if definition is None:
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
        return recurring.from_definition(definition, utcnow())

    @aws.service_errors
    def list_schedules(self) -> list[RecurringSchedule]:
        """Every recurring schedule, by name (one GetSchedule each: listing is rare)."""
        group = self.settings.require_recurring()[0]
        found = (schedules.get(name, group) for name in schedules.names(group))
        return [recurring.from_definition(d, utcnow()) for d in found if d is not None]

    @aws.service_errors
    def pause_schedule(self, name: str) -> RecurringSchedule:
        """Stop a schedule firing until it is resumed (runs missed meanwhile do not happen)."""
        return self._set_state(name, enabled=False)

    @aws.service_errors
    def resume_schedule(self, name: str) -> RecurringSchedule:
        """Let a paused schedule fire again: its next run is the first one after now (the runs
        it missed while paused never happen)."""
        return self._set_state(name, enabled=True)

    def _set_state(self, name: str, enabled: bool) -> RecurringSchedule:
        """One GetSchedule, and an UpdateSchedule only if the state changes (it keeps the whole
        definition, start and end included)."""
        recurring.check_name(name)
        definition = schedules.get(name, self.settings.require_recurring()[0])
        if definition is None:
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")
        state = "ENABLED" if enabled else "DISABLED"
        if definition.get("State") != state:
            schedules.set_state(definition, enabled)
        return recurring.from_definition({**definition, "State": state}, utcnow())

    @aws.service_errors
    def delete_schedule(self, name: str) -> None:
        """Delete a recurring schedule; jobs of runs already fired are not affected."""
        recurring.check_name(name)
        if not schedules.delete(name, self.settings.require_recurring()[0]):
            raise ScheduleNotFoundError(f"no recurring schedule {name!r}")

    # -- failures --------------------------------------------------------------------------

    @aws.service_errors
    def retry(self, job_id: str) -> Job:
        """Run a failed job again, with fresh attempts."""
        job = self.log.get(check_job_id(job_id))
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job log")
        if job.state != JobState.FAILED:
            raise InvalidStateError(
                f"job {job_id} is {job.state.value}; only a failed job can be retried"
            )
        jt = get_job_type(job.type)  # before anything changes: no worker could run it
        queue_url = self.settings.queue_url_of(jt.queue)
        requeued = self.log.requeue(job_id, job.generation)
        if requeued is None:
            raise InvalidStateError(f"job {job_id} changed while retrying it; look again")
        self._send_or_fail(requeued, queue_url, jt, "retry")
        return requeued

    def _send_or_fail(self, job: Job, queue_url: str, jt: JobType, action: str) -> None:
        """Send the message of a job the log holds (`job`, as it now stands); if it cannot be
        sent, mark the job failed with the reason and raise `EnqueueError`."""
        envelope = Envelope(id=job.id, type=job.type, payload=job.payload, enqueued_at=utcnow())
        try:
            queues.send(queue_url, envelope.to_json())
        except Exception as exc:
            reason = redact(f"{action} failed: could not send to queue: {exc}")
            self.log.mark_send_failed(job, reason, jt.retention.failed)
            raise EnqueueError(f"job {job.id}: {reason}") from exc

    @aws.service_errors
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
        from pydantic import ValidationError

        try:
            envelope = Envelope.model_validate_json(body)
        except ValidationError:
            return body  # not a job envelope: moved back as it is, as SQS would
        if envelope.dead_letter is not None:
            # Only the failure that was dead-lettered (a job since reset is left alone)
            self.log.requeue(envelope.id, envelope.dead_letter.generation)
        return envelope.model_copy(update={"dead_letter": None}).to_json()


_default: Jobkit | None = None


def default_client() -> Jobkit:
    """The process-wide client built from the environment's settings."""
    global _default
    if _default is None:
        _default = Jobkit()
    return _default
