"""Claims: a worker takes a job in the job log for one attempt (or adopts a job that has no
log item yet), in one conditional write that also says why a refused claim was refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.items import as_json, n, s
from jobkit.models import Job, JobState, iso, utcnow
from jobkit.store_items import job_from_item, new_item, now_ms
from jobkit.store_writes import JobTable, retried

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


class ClaimOutcome(Enum):
    CLAIMED = "claimed"  # this worker runs the job now
    FINISHED = "finished"  # already succeeded, failed or cancelled: drop the message
    BUSY = "busy"  # another worker holds an unexpired lease: look again when it ends
    MISSING = "missing"  # no such job in the log (a producer that skipped enqueue)
    MISMATCH = "mismatch"  # the log's job has another type or payload than the message
    # An attempt that never finished (its lease passed) and may not be taken over: it was
    # the last one, or the type is at_most_once. The worker fails the job (`fail_as_found`).
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    job: Job | None = None
    lease_remaining: float = 0.0


@dataclass(frozen=True)
class Expected:
    """The job a message names, as the message has it. A claim given one holds only for the
    job that is exactly that (its type and payload; the message must agree with the log).

    The claim also requires the job's `max_attempts` to be this one and its generation to be 0
    (never retried or redriven after failing): then the write returns only what it changed
    (`UPDATED_NEW`, a few scalars) instead of the whole item, and the claimed `Job` is this
    plus those. A job that differs in those two alone is claimed again, the long way (one more
    write unit): one whose type's max_attempts changed since it was enqueued, or one retried
    or redriven after it failed."""

    type: str
    queue: str  # the worker's (the log's is not read back)
    payload: dict[str, Any]
    max_attempts: int  # the job type's
    created_at: datetime  # the message's enqueued_at (the log's is not read back)

    def job(self, job_id: str, attempts: int, now: datetime, lease_until_ms: int) -> Job:
        """The claimed job: the log's, as the claim's condition has just proved."""
        return Job(
            id=job_id,
            type=self.type,
            queue=self.queue,
            state=JobState.RUNNING,
            attempts=attempts,
            max_attempts=self.max_attempts,
            created_at=self.created_at,
            updated_at=now,
            started_at=now,
            payload=self.payload,
            lease_until=datetime.fromtimestamp(lease_until_ms / 1000, now.tzinfo),
        )


def _claim_write(
    now: datetime, lease_seconds: float, dead_letter_generation: int | None, take_over: bool
) -> tuple[str, str, dict[str, AttributeValueTypeDef]]:
    """A claim's update, condition and values (see `Claims.claim`)."""
    now_ms_ = int(now.timestamp() * 1000)
    values: dict[str, AttributeValueTypeDef] = {
        ":running": s(JobState.RUNNING.value),
        ":one": n(1),
        ":now": s(iso(now)),
        ":lease": n(now_ms_ + int(lease_seconds * 1000)),
    }
    if dead_letter_generation is not None:
        values[":failed"] = s(JobState.FAILED.value)
        values[":gen"] = n(dead_letter_generation)
        update = (
            "SET state = :running, attempts = :one, generation = generation + :one, "
            "lease_until = :lease, started_at = :now, updated_at = :now "
            "REMOVE state_shard, expires_at, finished_at, dead_letter_due"
        )
        return update, "state = :failed AND generation = :gen", values
    condition = "state IN (:scheduled, :queued, :retrying)"
    values[":scheduled"] = s(JobState.SCHEDULED.value)
    values[":queued"] = s(JobState.QUEUED.value)
    values[":retrying"] = s(JobState.RETRYING.value)
    if take_over:
        condition += " OR (state = :running AND lease_until < :now_ms)"
        values[":now_ms"] = n(now_ms_)
    # Attempts never go past the job's max_attempts.
    update = (
        "SET state = :running, attempts = attempts + :one, lease_until = :lease, "
        "started_at = :now, updated_at = :now REMOVE state_shard, next_attempt_at"
    )
    return update, f"({condition}) AND attempts < max_attempts", values


def _refused_claim(
    old_item: dict[str, Any] | None,
    job_type: str | None,
    payload: AttributeValueTypeDef | None,
    now_ms_: int,
) -> Claim:
    """Why a claim's condition failed, from the item as it was."""
    if old_item is None:
        return Claim(ClaimOutcome.MISSING)
    job = job_from_item(old_item)
    if job_type is not None and (job.type != job_type or old_item.get("payload") != payload):
        return Claim(ClaimOutcome.MISMATCH, job)
    if job.state == JobState.RUNNING:
        lease_ms = int(old_item.get("lease_until", {}).get("N", "0"))
        if lease_ms >= now_ms_:
            return Claim(ClaimOutcome.BUSY, job, (lease_ms - now_ms_) / 1000)
        return Claim(ClaimOutcome.ABANDONED, job)
    if not job.state.finished and job.attempts >= job.max_attempts:
        return Claim(ClaimOutcome.ABANDONED, job)  # cannot happen by jobkit's own writes
    # finished, or a dead letter of an older generation (the job was reset since)
    return Claim(ClaimOutcome.FINISHED, job)


class Claims(JobTable):
    """The job log's claims (`jobkit.store.JobLog` has them)."""

    @aws.service_errors
    def is_logged(self, job_id: str, *, consistent: bool = False) -> bool:
        """Is the job in the log? One GetItem, for job types that track failures only: a job
        not in the log runs with no claim. Eventually consistent (half a read unit for an
        item up to 4 KB), an item written within about a second may not show yet; with
        `consistent`, one read unit."""
        response = aws.dynamodb().get_item(
            TableName=self.table,
            Key={"pk": s(job_id)},
            ProjectionExpression="pk",
            ConsistentRead=consistent,
        )
        return "Item" in response

    @aws.service_errors
    def claim(
        self,
        job_id: str,
        lease_seconds: float,
        dead_letter_generation: int | None = None,
        *,
        expected: Expected | None = None,
        take_over: bool = True,
    ) -> Claim:
        """Take the job for one attempt: running, attempts + 1, lease until now + lease.

        Allowed from scheduled, queued or retrying, or, with `take_over`, from running once
        the lease has passed (the previous attempt crashed or timed out) if attempts are
        left. A redriven dead-letter message (`dead_letter_generation`) may instead take a
        failed job of that generation, with fresh attempts. With `expected`, only the job
        that is exactly that (the message must agree with the log); a job that is not comes
        back as MISMATCH, unchanged.
        """
        short = expected is not None and dead_letter_generation is None
        claim = self._claim(
            job_id, lease_seconds, dead_letter_generation, expected, take_over, short=short
        )
        if claim is None:  # another max_attempts or generation than expected: the long way
            claim = self._claim(job_id, lease_seconds, None, expected, take_over, short=False)
        assert claim is not None  # only a short claim gives up
        return claim

    def _claim(
        self,
        job_id: str,
        lease_seconds: float,
        dead_letter_generation: int | None,
        expected: Expected | None,
        take_over: bool,
        *,
        short: bool,
    ) -> Claim | None:
        """One claim write. `short` (with `expected`): the write returns only what it changed
        and holds only for the expected max_attempts and generation 0; None when the job has
        another of those (the caller then claims it the long way)."""
        from botocore.exceptions import ClientError

        now = utcnow()
        now_ms_ = int(now.timestamp() * 1000)
        update, condition, values = _claim_write(
            now, lease_seconds, dead_letter_generation, take_over
        )
        if expected is not None:
            condition += " AND type = :type AND payload = :payload"
            values[":type"] = s(expected.type)
            values[":payload"] = as_json(expected.payload)
            if short:
                condition += " AND max_attempts = :max AND generation = :zero"
                values[":max"] = n(expected.max_attempts)
                values[":zero"] = n(0)
        try:
            response = self._update(
                job_id,
                update,
                values,
                condition=f"attribute_exists(pk) AND {condition}",
                returns="UPDATED_NEW" if short else "ALL_NEW",
                on_conflict="ALL_OLD",
            )
        except ClientError as exc:
            old = aws.conflict_item(exc)
            mine = (values[":lease"], values[":now"])
            if old and retried(exc) and (old.get("lease_until"), old.get("started_at")) == mine:
                return Claim(ClaimOutcome.CLAIMED, job_from_item(old))  # a retry of this claim
            proven = (values.get(":max"), values.get(":zero"))
            if short and old and (old.get("max_attempts"), old.get("generation")) != proven:
                return None
            job_type = expected.type if expected else None
            return _refused_claim(old, job_type, values.get(":payload"), now_ms_)
        if short and expected is not None:
            attempts = int(response["Attributes"]["attempts"]["N"])
            job = expected.job(job_id, attempts, now, int(values[":lease"]["N"]))
            return Claim(ClaimOutcome.CLAIMED, job)
        return Claim(ClaimOutcome.CLAIMED, job_from_item(response["Attributes"]))

    @aws.service_errors
    def adopt(
        self, job_id: str, expected: Expected, lease_seconds: float, *, take_over: bool = True
    ) -> Claim:
        """Create the log item of a job whose producer sent it straight to SQS, claimed; if
        the job is there already, claim it (it must be the same job)."""
        item = new_item(
            job_id,
            expected.type,
            expected.queue,
            expected.max_attempts,
            expected.payload,
            JobState.RUNNING,
        )
        item["attempts"] = n(1)
        item["started_at"] = item["updated_at"]
        item["lease_until"] = n(now_ms() + int(lease_seconds * 1000))
        created, job = self.put_new(item)
        if created:
            return Claim(ClaimOutcome.CLAIMED, job)
        return self.claim(job_id, lease_seconds, expected=expected, take_over=take_over)
