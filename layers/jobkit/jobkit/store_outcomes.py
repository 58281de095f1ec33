"""Outcomes: how a claimed attempt ends in the job log (succeeded, retrying, failed), its
heartbeats, and the failures a worker records without an attempt (a job whose attempt never
finished, a message no worker can run), each one conditional write."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.items import as_json, n, s
from jobkit.models import Job, JobState, iso, utcnow
from jobkit.store_items import new_item, shard_of, ttl
from jobkit.store_writes import JobTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def _failed(
    job_id: str, error: str, retention: timedelta, now: datetime
) -> tuple[str, dict[str, AttributeValueTypeDef]]:
    """The update that makes a job failed (it enters `by_state`, and expires in time), with
    its dead letter due: `dead_lettered` clears that once the DLQ has it."""
    return (
        "SET state = :failed, error = :error, finished_at = :now, updated_at = :now, "
        "state_shard = :shard, expires_at = :ttl, dead_letter_due = :due REMOVE lease_until",
        {
            ":failed": s(JobState.FAILED.value),
            ":error": s(error),
            ":now": s(iso(now)),
            ":shard": s(f"failed#{shard_of(job_id)}"),
            ":ttl": ttl(retention, now),
            ":due": {"BOOL": True},
        },
    )


class Outcomes(JobTable):
    """The job log's outcome writes (`jobkit.store.JobLog` has them)."""

    @aws.service_errors
    def record_unrunnable(
        self,
        job_id: str,
        job_type: str,
        queue: str,
        payload: dict[str, Any],
        error: str,
        retention: timedelta,
    ) -> tuple[bool, Job]:
        """Log a message no worker can run (unknown type, another queue's type) as a failed
        job, unless a job with its id exists: that one is never touched. (created, job)."""
        now = utcnow()
        item = new_item(job_id, job_type, queue, 1, payload, JobState.FAILED, now=now)
        item["error"] = s(error)
        item["finished_at"] = item["updated_at"]
        item["expires_at"] = ttl(retention, now)
        item["dead_letter_due"] = {"BOOL": True}
        return self.put_new(item)

    @aws.service_errors
    def dead_lettered(self, job_id: str, generation: int) -> bool:
        """The failed job's dead letter is in the DLQ: it is no longer due. (Failing a job and
        sending its dead letter are two steps; a worker that dies between them leaves the mark,
        and the next delivery of its message sends the dead letter.)"""
        return self._conditional(
            job_id,
            "REMOVE dead_letter_due",
            {":failed": s(JobState.FAILED.value), ":gen": n(generation)},
            "state = :failed AND generation = :gen AND attribute_exists(dead_letter_due)",
        )

    @aws.service_errors
    def succeed(
        self,
        job_id: str,
        attempt: int,
        result: Any,
        duration_ms: int,
        retention: timedelta,
        *,
        until: float | None = None,
    ) -> bool:
        """running -> succeeded; False when this attempt no longer holds the job.

        `until` (a `time.monotonic()` moment, the end of the attempt's lease): an error that
        may pass (throttling, a network fault) is retried until then, not given up at once.
        The same holds for `retrying`, `fail` and `fail_as_found`."""
        now = utcnow()
        return self._finish(
            job_id,
            attempt,
            "SET state = :succeeded, result = :result, duration_ms = :duration, "
            "finished_at = :now, updated_at = :now, expires_at = :ttl REMOVE lease_until",
            {
                ":succeeded": s(JobState.SUCCEEDED.value),
                ":result": as_json(result),
                ":duration": n(duration_ms),
                ":now": s(iso(now)),
                ":ttl": ttl(retention, now),
            },
            until=until,
        )

    @aws.service_errors
    def retrying(
        self, job_id: str, attempt: int, error: str, delay: float, *, until: float | None = None
    ) -> bool:
        """running -> retrying after a transient error; the message returns after `delay`."""
        now = utcnow()
        return self._finish(
            job_id,
            attempt,
            "SET state = :retrying, error = :error, updated_at = :now, next_attempt_at = :next, "
            "state_shard = :shard REMOVE lease_until",
            {
                ":retrying": s(JobState.RETRYING.value),
                ":error": s(error),
                ":now": s(iso(now)),
                ":next": s(iso(now + timedelta(seconds=delay))),
                ":shard": s(f"retrying#{shard_of(job_id)}"),
            },
            until=until,
        )

    @aws.service_errors
    def fail(
        self,
        job_id: str,
        attempt: int,
        error: str,
        retention: timedelta,
        *,
        until: float | None = None,
    ) -> bool:
        """running -> failed; False when this attempt no longer holds the job."""
        now = utcnow()
        return self._finish(job_id, attempt, *_failed(job_id, error, retention, now), until=until)

    @aws.service_errors
    def fail_as_found(
        self, job: Job, error: str, retention: timedelta, *, until: float | None = None
    ) -> bool:
        """-> failed, only while the job is still as `job` shows it (state, attempts,
        generation; a running one with its lease passed): a job whose last attempt never
        finished (`ClaimOutcome.ABANDONED`), or one no worker of its queue can run."""
        now = utcnow()
        update, values = _failed(job.id, error, retention, now)
        values = {
            **values,
            ":held": s(job.state.value),
            ":attempt": n(job.attempts),
            ":gen": n(job.generation),
        }
        condition = "state = :held AND attempts = :attempt AND generation = :gen"
        if job.state == JobState.RUNNING:
            condition += " AND lease_until < :now_ms"
            values[":now_ms"] = n(int(now.timestamp() * 1000))
        return self._conditional(job.id, update, values, condition, until=until)

    @aws.service_errors
    def heartbeat(
        self, job_id: str, attempt: int, lease_seconds: float, progress: Any = None
    ) -> bool:
        """Extend a running attempt's lease to now + `lease_seconds` (and record `progress`,
        if given, in the same write); False when this attempt no longer holds the job."""
        now = utcnow()
        update = "SET lease_until = :lease, updated_at = :now"
        values: dict[str, AttributeValueTypeDef] = {
            ":lease": n(int(now.timestamp() * 1000) + int(lease_seconds * 1000)),
            ":now": s(iso(now)),
        }
        if progress is not None:
            update += ", progress = :progress"
            values[":progress"] = as_json(progress)
        return self._finish(job_id, attempt, update, values)

    def _finish(
        self,
        job_id: str,
        attempt: int,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        *,
        until: float | None = None,
    ) -> bool:
        """A write that holds only while this attempt (`attempt`, running) holds the job."""
        values = {**values, ":attempt": n(attempt), ":held": s(JobState.RUNNING.value)}
        condition = "state = :held AND attempts = :attempt"
        return self._conditional(job_id, update, values, condition, until=until)
