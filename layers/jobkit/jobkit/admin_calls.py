"""The operator calls of `jobkit.client.Jobkit`: read the job log, cancel a job or run it
now, retry a failed job, redrive a dead-letter queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from jobkit import mappings, queues, schedules
from jobkit.errors import (
    EnqueueError,
    InvalidRequestError,
    InvalidStateError,
    JobkitError,
    JobNotFoundError,
)
from jobkit.job_listing import Filters, JobsPage, PagesWalk, StateWalk, Walk, find
from jobkit.jobs import JobType, Retention, get_job_type, registered_job_types
from jobkit.models import Envelope, Job, JobState, check_job_id, utcnow
from jobkit.redact import redact
from jobkit.settings import Settings
from jobkit.store import JobLog

__all__ = ["AdminCalls", "BulkResult", "JobsPage", "RedriveResult", "apply_each"]


@dataclass(frozen=True)
class BulkResult:
    """What a bulk retry or cancel did: the jobs it matched, those it changed, and those it
    could not (id, why: another operator or a worker got there first, an AWS error)."""

    matched: list[str]
    done: list[str]
    failed: list[tuple[str, str]]
    dry_run: bool = False


@dataclass(frozen=True)
class RedriveResult:
    queue: str
    moved: int | None  # None: an asynchronous StartMessageMoveTask is moving them
    task_handle: str | None = None
    # A filtered, limited or dry-run redrive (`jobkit.dead_letter_calls`): of the messages
    # read, how many matched, and how many were left in the DLQ (None: the whole DLQ moved).
    matched: int | None = None
    left: int | None = None
    dry_run: bool = False


def _moments(**moments: datetime | None) -> list[datetime | None]:
    """The time bounds of a listing, each a timezone-aware datetime (or None)."""
    for name, moment in moments.items():
        if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
            raise InvalidRequestError(
                f"{name} is a timezone-aware datetime (e.g. 2026-12-01T09:00:00+00:00), "
                f"not {moment!r}"
            )
    return list(moments.values())


def apply_each(ids: list[str], action: Callable[[str], Job], dry_run: bool = False) -> BulkResult:
    """`action(id)` for each id (a retry, a cancel); one job's refusal or AWS error does not
    stop the others. Bulk calls use it, and the CLI on exactly the jobs it showed."""
    if dry_run:
        return BulkResult(matched=ids, done=[], failed=[], dry_run=True)
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for job_id in ids:
        try:
            action(job_id)
        except JobkitError as exc:  # one job's refusal or AWS error: the others go on
            failed.append((job_id, str(exc)))
        else:
            done.append(job_id)
    return BulkResult(matched=ids, done=done, failed=failed)


class AdminCalls:
    """`Jobkit`'s calls on jobs already enqueued."""

    settings: Settings
    log: JobLog

    def get_job(self, job_id: str) -> Job | None:
        """The job as the log has it now (a consistent read), or None."""
        return self.log.get(check_job_id(job_id))

    def list_jobs(
        self,
        state: JobState | str | None = None,
        job_type: JobType | str | None = None,
        limit: int = 50,
        queue: str | None = None,
        *,
        id_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
    ) -> list[Job]:
        """The first page of `find_jobs` (its jobs, newest first); never a Scan."""
        return self.find_jobs(
            state,
            job_type,
            limit,
            queue,
            id_prefix=id_prefix,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
        ).jobs

    def find_jobs(
        self,
        state: JobState | str | None = None,
        job_type: JobType | str | None = None,
        limit: int = 50,
        queue: str | None = None,
        *,
        id_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        page_token: str | None = None,
    ) -> JobsPage:
        """One page of jobs, newest first, and the token of the next (`next_token`, None
        when no more match); pass it back with the same filters for the next older jobs.
        Never a Scan (`jobkit.job_listing`).

        Off-happy-path states (scheduled, retrying, failed, cancelled) come from the job
        log's sparse `by_state` index, newest updated first; the rest from the pages worker
        batches write (`jobkit.store_pages`) and those of the job log's stream
        (`jobkit.pages_feed`: a waiting job about 10 s after its enqueue), newest enqueued
        first. Without a queue or type, the queues of the types declared in
        this process. Time bounds: `*_after` included, `*_before` excluded, timezone-aware.

        Paging shows each job that does not change meanwhile exactly once, none skipped; a
        job that changes between pages may move (to the top: not shown again, or missed). A
        page may hold fewer than `limit` jobs while `next_token` is set (rare matches: each
        call reads a bounded part of the index). A token that is damaged, or made for other
        filters, is an `InvalidRequestError`.
        """
        try:
            wanted = JobState(state) if state is not None else None
        except ValueError:
            known = ", ".join(s.value for s in JobState)
            raise InvalidRequestError(f"unknown state {state!r} (one of: {known})") from None
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequestError(f"limit is a positive whole number, not {limit!r}")
        declared = get_job_type(job_type) if job_type is not None else None
        filters = Filters(
            wanted,
            declared.name if declared else None,
            queue,
            id_prefix or "",
            *_moments(
                created_after=created_after,
                created_before=created_before,
                updated_after=updated_after,
                updated_before=updated_before,
            ),
        )
        walk: Walk
        if filters.by_state:
            walk = StateWalk(self.log, filters)
        else:
            only = declared.queue if declared else queue
            queues = [only] if only else sorted({t.queue for t in registered_job_types().values()})
            walk = PagesWalk(self.settings.require_pages_table(), queues, filters)
        return find(self.log, walk, filters, limit, page_token)

    def retry_many(
        self,
        job_type: JobType | str | None = None,
        *,
        queue: str | None = None,
        id_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        dry_run: bool = False,
    ) -> BulkResult:
        """`retry` each failed job that matches (newest first, up to `limit`); `dry_run` only
        says which would be retried."""
        found = self.list_jobs(
            JobState.FAILED,
            job_type,
            limit,
            queue,
            id_prefix=id_prefix,
            created_after=created_after,
            created_before=created_before,
        )
        return apply_each([j.id for j in found], self.retry, dry_run)

    def cancel_many(
        self,
        job_type: JobType | str | None = None,
        *,
        queue: str | None = None,
        id_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        dry_run: bool = False,
    ) -> BulkResult:
        """`cancel` each scheduled, queued or retrying job that matches (newest first, up to
        `limit` of each state); `dry_run` only says which would be cancelled. Queued jobs are
        found by the job pages, so one enqueued in the last seconds (before its stream page)
        is not reached: pause the queue first to hold new ones, or cancel it by id."""
        ids = [
            job.id
            for state in (JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYING)
            for job in self.list_jobs(
                state,
                job_type,
                limit,
                queue,
                id_prefix=id_prefix,
                created_after=created_after,
                created_before=created_before,
            )
        ]
        return apply_each(ids, self.cancel, dry_run)

    def pause_queue(self, queue: str) -> list[str]:
        """Stop the queue's worker from receiving: its event source mapping is disabled, the
        messages wait in SQS (jobs already running finish). Returns the mappings' states."""
        return self._switch(queue, enabled=False)

    def resume_queue(self, queue: str) -> list[str]:
        """Let the queue's worker receive again (its event source mapping is enabled)."""
        return self._switch(queue, enabled=True)

    def _switch(self, queue: str, *, enabled: bool) -> list[str]:
        found = mappings.of_queue(queues.queue_arn(self.settings.queue_url_of(queue)))
        if not found:
            raise InvalidRequestError(
                f"no event source mapping reads queue {queue!r}: is its worker deployed?"
            )
        return [mappings.set_enabled(m["UUID"], enabled) for m in found]

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
