"""The job log in DynamoDB: one item per job, every state change one conditional write.

Item layout (attribute -> meaning):
  pk            job id (table key)
  type, queue, state, attempts, max_attempts, generation
  created_at    ISO time; sort key of the `by_type` index
  updated_at    ISO time; sort key of the `by_state` index
  type_shard    "<type>#<n>": key of `by_type`; written once, at enqueue
  state_shard   "<state>#<n>": key of `by_state`; present only off the happy path
                (scheduled, retrying, failed, cancelled), so a job that goes
                queued -> running -> succeeded writes the indexes exactly once
  lease_until   epoch ms while running: a claim may take over once it has passed
  payload, result, progress   JSON text
  error, duration_ms, started_at, finished_at, next_attempt_at
  expires_at    epoch seconds, DynamoDB TTL of a finished job
  dead_letter_due  true from a failure until its dead letter is in the DLQ
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.items import as_json as _json
from jobkit.items import conflict_item as _conflict_item
from jobkit.items import n as _n
from jobkit.items import s as _s
from jobkit.models import Job, JobState, iso, utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]
else:
    Item = dict[str, Any]

# Fixed: changing it would hide jobs written under the old count from listings.
INDEX_SHARDS = 8
# States that put a job in the sparse `by_state` index.
INDEXED_STATES = frozenset(
    {JobState.SCHEDULED, JobState.RETRYING, JobState.FAILED, JobState.CANCELLED}
)
CANCELLABLE = (JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYING)
BY_TYPE = "by_type"
BY_STATE = "by_state"


_ATTRIBUTES = (
    "pk",
    "type",
    "queue",
    "state",
    "attempts",
    "max_attempts",
    "generation",
    "created_at",
    "updated_at",
    "type_shard",
    "state_shard",
    "lease_until",
    "payload",
    "result",
    "progress",
    "error",
    "duration_ms",
    "started_at",
    "finished_at",
    "next_attempt_at",
    "expires_at",
    "dead_letter_due",
)
_NAME = re.compile(r"(?<![:#\w])(" + "|".join(_ATTRIBUTES) + r")\b")


@lru_cache(maxsize=128)
def _placeholders(*expressions: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """Write every attribute as `#name` (DynamoDB reserves words such as state and result)."""
    names: dict[str, str] = {}

    def sub(match: re.Match[str]) -> str:
        names[f"#{match.group(1)}"] = match.group(1)
        return f"#{match.group(1)}"

    return tuple(_NAME.sub(sub, e) for e in expressions), names


def shard_of(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % INDEX_SHARDS


def now_ms() -> int:
    return int(time.time() * 1000)


def new_item(
    job_id: str,
    job_type: str,
    queue: str,
    max_attempts: int,
    payload: dict[str, Any],
    state: JobState = JobState.QUEUED,
    now: datetime | None = None,
    run_at: datetime | None = None,
    schedule: str | None = None,
) -> Item:
    """The item `enqueue` writes; a job with a due time is `scheduled`."""
    if run_at is not None and state is JobState.QUEUED:
        state = JobState.SCHEDULED
    stamp = iso(now or utcnow())
    item: Item = {
        "pk": _s(job_id),
        "type": _s(job_type),
        "queue": _s(queue),
        "state": _s(state.value),
        "attempts": _n(0),
        "max_attempts": _n(max_attempts),
        "generation": _n(0),
        "created_at": _s(stamp),
        "updated_at": _s(stamp),
        "type_shard": _s(f"{job_type}#{shard_of(job_id)}"),
        "payload": _json(payload),
    }
    if run_at is not None:
        item["run_at"] = _s(iso(run_at))
    if schedule:
        item["schedule_name"] = _s(schedule)
    if state in INDEXED_STATES:
        item["state_shard"] = _s(f"{state.value}#{shard_of(job_id)}")
    return item


def job_from_item(item: dict[str, Any]) -> Job:
    """Decode a low-level DynamoDB item."""

    def get(name: str) -> Any:
        value = item.get(name)
        if value is None:
            return None
        if "S" in value:
            return value["S"]
        if "N" in value:
            return float(value["N"]) if "." in value["N"] else int(value["N"])
        return None

    def loads(name: str) -> Any:
        raw = get(name)
        return None if raw is None else json.loads(raw)

    return Job(
        id=get("pk"),
        type=get("type"),
        queue=get("queue"),
        state=JobState(get("state")),
        attempts=get("attempts") or 0,
        max_attempts=get("max_attempts") or 1,
        created_at=get("created_at"),
        updated_at=get("updated_at"),
        started_at=get("started_at"),
        finished_at=get("finished_at"),
        duration_ms=get("duration_ms"),
        progress=loads("progress"),
        result=loads("result"),
        error=get("error"),
        payload=loads("payload") or {},
        generation=get("generation") or 0,
        run_at=get("run_at"),
        lease_until=_from_ms(get("lease_until")) if get("state") == "running" else None,
        dead_letter_due=bool(item.get("dead_letter_due", {}).get("BOOL", False)),
        next_attempt_at=get("next_attempt_at") if get("state") == "retrying" else None,
    )


def _from_ms(value: int | float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


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


def _ttl(retention: timedelta, now: datetime) -> AttributeValueTypeDef:
    return _n(int((now + retention).timestamp()))


# DynamoDB errors that pass with time.
_PASSING_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)


def _retried(exc: Exception) -> bool:
    """Did botocore send the request more than once (an earlier try may have landed)?"""
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


_ASSIGNMENT = re.compile(r"^(\w+) = (:\w+)$")


def _applied(
    update: str, values: dict[str, AttributeValueTypeDef], item: dict[str, Any] | None
) -> bool:
    """Is `item` already what the update `SET a = :x, ... [REMOVE b, ...]` makes of it?"""
    if item is None:
        return False
    sets, _, removes = update.removeprefix("SET ").partition(" REMOVE ")
    for assignment in sets.split(", "):
        match = _ASSIGNMENT.match(assignment.strip())
        if match is None or item.get(match.group(1)) != values[match.group(2)]:
            return False
    return not any(name.strip() in item for name in removes.split(",") if name.strip())


def _time_for(pause: float, until: float | None) -> bool:
    """Is there time to wait `pause` s and try again before `until` (monotonic)?"""
    return until is not None and time.monotonic() + pause < until


def _failed(
    job_id: str, error: str, retention: timedelta, now: datetime
) -> tuple[str, dict[str, AttributeValueTypeDef]]:
    """The update that makes a job failed (it enters `by_state`, and expires in time), with
    its dead letter due: `dead_lettered` clears that once the DLQ has it."""
    return (
        "SET state = :failed, error = :error, finished_at = :now, updated_at = :now, "
        "state_shard = :shard, expires_at = :ttl, dead_letter_due = :due REMOVE lease_until",
        {
            ":failed": _s(JobState.FAILED.value),
            ":error": _s(error),
            ":now": _s(iso(now)),
            ":shard": _s(f"failed#{shard_of(job_id)}"),
            ":ttl": _ttl(retention, now),
            ":due": {"BOOL": True},
        },
    )


class JobLog:
    """Adapter over the job-log table. Conditional writes make each transition happen once."""

    def __init__(self, table: str) -> None:
        self.table = table

    # -- producers -------------------------------------------------------------------------

    def put_new(self, item: Item) -> tuple[bool, Job]:
        """Write a new job unless its id exists: (created, job). The existing job comes back
        from the failed condition itself, so a duplicate costs no extra read."""
        from botocore.exceptions import ClientError

        try:
            aws.dynamodb().put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            existing = _conflict_item(exc) or {}
            # botocore retried a put whose first try did land (a timeout, a reset): the item
            # in the way is this very one, so this call did create the job.
            return _retried(exc) and existing == item, job_from_item(existing)
        return True, job_from_item(item)

    def put_new_many(self, items: list[Item]) -> list[tuple[bool, Job] | Exception]:
        """`put_new` for each item, in parallel: (created, job), or the error of that write.

        One conditional PutItem per job rather than BatchWriteItem, which has no conditions:
        DynamoDB bills the same write units for either (a unit per KB of each item), and only
        the condition makes one caller the creator of an id and hands everyone else the job
        that exists, untouched.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        def put(item: Item) -> tuple[bool, Job] | Exception:
            try:
                return self.put_new(item)
            except (BotoCoreError, ClientError) as exc:
                return exc

        if len(items) <= 1:
            return [put(item) for item in items]
        with ThreadPoolExecutor(min(aws.ENQUEUE_THREADS, len(items))) as pool:
            return list(pool.map(put, items))

    def get(self, job_id: str) -> Job | None:
        response = aws.dynamodb().get_item(
            TableName=self.table, Key={"pk": _s(job_id)}, ConsistentRead=True
        )
        item = response.get("Item")
        return job_from_item(item) if item else None

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """BatchGetItem, 100 keys at a time, retrying unprocessed keys."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), 100):
            keys: list[Any] = [{"pk": _s(i)} for i in ids[start : start + 100]]
            for attempt in range(8):
                response = aws.dynamodb().batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                )
                for item in response.get("Responses", {}).get(self.table, []):
                    job = job_from_item(item)
                    found[job.id] = job
                unprocessed: Any = response.get("UnprocessedKeys", {})
                keys = list(unprocessed.get(self.table, {}).get("Keys", []))
                if not keys:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
        return found

    def mark_send_failed(self, job: Job, error: str, retention: timedelta) -> bool:
        """The message never reached its queue: the log must say so, or the job is lost.

        Only while the job is as the sender left it (`job`: its state, no attempt yet, its
        generation); False if it has moved on (the message did arrive after all and a worker
        claimed it) or is not there."""
        now = utcnow()
        return self._conditional(
            job.id,
            "SET state = :failed, error = :error, updated_at = :now, finished_at = :now, "
            "state_shard = :shard, expires_at = :ttl",
            {
                ":failed": _s(JobState.FAILED.value),
                ":error": _s(error),
                ":now": _s(iso(now)),
                ":shard": _s(f"failed#{shard_of(job.id)}"),
                ":ttl": _ttl(retention, now),
                ":sent": _s(job.state.value),
                ":zero": _n(0),
                ":gen": _n(job.generation),
            },
            "state = :sent AND attempts = :zero AND generation = :gen",
        )

    def requeue(self, job_id: str, generation: int) -> Job | None:
        """failed -> queued with fresh attempts (retry by id, DLQ redrive), only while the job
        is still the failure of that `generation`; None when it is not."""
        from botocore.exceptions import ClientError

        try:
            response = self._update(
                job_id,
                "SET state = :queued, attempts = :zero, generation = generation + :one, "
                "updated_at = :now "
                "REMOVE state_shard, expires_at, finished_at, lease_until, dead_letter_due",
                {
                    ":failed": _s(JobState.FAILED.value),
                    ":queued": _s(JobState.QUEUED.value),
                    ":zero": _n(0),
                    ":one": _n(1),
                    ":now": _s(iso(utcnow())),
                    ":gen": _n(generation),
                },
                condition="state = :failed AND generation = :gen",
                returns="ALL_NEW",
            )
        except ClientError as exc:
            _conflict_item(exc)  # anything but a failed condition is raised again
            return None
        return job_from_item(response["Attributes"])

    # -- workers ---------------------------------------------------------------------------

    def claim(
        self,
        job_id: str,
        lease_seconds: float,
        dead_letter_generation: int | None = None,
        *,
        job_type: str | None = None,
        payload: dict[str, Any] | None = None,
        take_over: bool = True,
    ) -> Claim:
        """Take the job for one attempt: running, attempts + 1, lease until now + lease.

        Allowed from scheduled, queued or retrying, or, with `take_over`, from running once
        the lease has passed (the previous attempt crashed or timed out) if attempts are
        left. A redriven dead-letter message (`dead_letter_generation`) may instead take a
        failed job of that generation, with fresh attempts. With `job_type` and `payload`,
        only a job that is exactly that (the message must agree with the log); a job that is
        not comes back as MISMATCH, unchanged.
        """
        from botocore.exceptions import ClientError

        now = utcnow()
        now_ms_ = int(now.timestamp() * 1000)
        values: dict[str, AttributeValueTypeDef] = {
            ":running": _s(JobState.RUNNING.value),
            ":one": _n(1),
            ":now": _s(iso(now)),
            ":lease": _n(now_ms_ + int(lease_seconds * 1000)),
        }
        if dead_letter_generation is None:
            condition = "state IN (:scheduled, :queued, :retrying)"
            values.update(
                {
                    ":scheduled": _s(JobState.SCHEDULED.value),
                    ":queued": _s(JobState.QUEUED.value),
                    ":retrying": _s(JobState.RETRYING.value),
                }
            )
            if take_over:
                condition += " OR (state = :running AND lease_until < :now_ms)"
                values[":now_ms"] = _n(now_ms_)
            # Attempts never go past the job's max_attempts.
            condition = f"({condition}) AND attempts < max_attempts"
            update = (
                "SET state = :running, attempts = attempts + :one, lease_until = :lease, "
                "started_at = :now, updated_at = :now REMOVE state_shard, next_attempt_at"
            )
        else:
            condition = "state = :failed AND generation = :gen"
            update = (
                "SET state = :running, attempts = :one, generation = generation + :one, "
                "lease_until = :lease, started_at = :now, updated_at = :now "
                "REMOVE state_shard, expires_at, finished_at, dead_letter_due"
            )
            values[":failed"] = _s(JobState.FAILED.value)
            values[":gen"] = _n(dead_letter_generation)
        if job_type is not None:
            condition += " AND type = :type AND payload = :payload"
            values[":type"] = _s(job_type)
            values[":payload"] = _json(payload or {})
        try:
            response = self._update(
                job_id,
                update,
                values,
                condition=f"attribute_exists(pk) AND {condition}",
                returns="ALL_NEW",
                on_conflict="ALL_OLD",
            )
        except ClientError as exc:
            old = _conflict_item(exc)
            mine = (values[":lease"], values[":now"])
            if old and _retried(exc) and (old.get("lease_until"), old.get("started_at")) == mine:
                return Claim(ClaimOutcome.CLAIMED, job_from_item(old))  # a retry of this claim
            return _refused_claim(old, job_type, values.get(":payload"), now_ms_)
        return Claim(ClaimOutcome.CLAIMED, job_from_item(response["Attributes"]))

    def adopt(
        self,
        job_id: str,
        job_type: str,
        queue: str,
        max_attempts: int,
        payload: dict[str, Any],
        lease_seconds: float,
        *,
        take_over: bool = True,
    ) -> Claim:
        """Create the log item of a job whose producer sent it straight to SQS, claimed; if
        the job is there already, claim it (it must be the same job)."""
        item = new_item(job_id, job_type, queue, max_attempts, payload, JobState.RUNNING)
        item["attempts"] = _n(1)
        item["started_at"] = item["updated_at"]
        item["lease_until"] = _n(now_ms() + int(lease_seconds * 1000))
        created, job = self.put_new(item)
        if created:
            return Claim(ClaimOutcome.CLAIMED, job)
        return self.claim(
            job_id, lease_seconds, job_type=job_type, payload=payload, take_over=take_over
        )

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
        item["error"] = _s(error)
        item["finished_at"] = item["updated_at"]
        item["expires_at"] = _ttl(retention, now)
        item["dead_letter_due"] = {"BOOL": True}
        return self.put_new(item)

    def dead_lettered(self, job_id: str, generation: int) -> bool:
        """The failed job's dead letter is in the DLQ: it is no longer due. (Failing a job and
        sending its dead letter are two steps; a worker that dies between them leaves the mark,
        and the next delivery of its message sends the dead letter.)"""
        return self._conditional(
            job_id,
            "REMOVE dead_letter_due",
            {":failed": _s(JobState.FAILED.value), ":gen": _n(generation)},
            "state = :failed AND generation = :gen AND attribute_exists(dead_letter_due)",
        )

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
                ":succeeded": _s(JobState.SUCCEEDED.value),
                ":result": _json(result),
                ":duration": _n(duration_ms),
                ":now": _s(iso(now)),
                ":ttl": _ttl(retention, now),
            },
            until=until,
        )

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
                ":retrying": _s(JobState.RETRYING.value),
                ":error": _s(error),
                ":now": _s(iso(now)),
                ":next": _s(iso(now + timedelta(seconds=delay))),
                ":shard": _s(f"retrying#{shard_of(job_id)}"),
            },
            until=until,
        )

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
            ":held": _s(job.state.value),
            ":attempt": _n(job.attempts),
            ":gen": _n(job.generation),
        }
        condition = "state = :held AND attempts = :attempt AND generation = :gen"
        if job.state == JobState.RUNNING:
            condition += " AND lease_until < :now_ms"
            values[":now_ms"] = _n(int(now.timestamp() * 1000))
        return self._conditional(job.id, update, values, condition, until=until)

    def cancel(self, job_id: str, retention: timedelta) -> tuple[bool, Job | None, str | None]:
        """scheduled | queued | retrying -> cancelled: (done, job before, its schedule name).

        On refusal the job as it is comes back (None if there is no such job)."""
        now = utcnow()
        values: dict[str, AttributeValueTypeDef] = {
            ":cancelled": _s(JobState.CANCELLED.value),
            ":now": _s(iso(now)),
            ":shard": _s(f"cancelled#{shard_of(job_id)}"),
            ":ttl": _ttl(retention, now),
            **{f":w{i}": _s(s.value) for i, s in enumerate(CANCELLABLE)},
        }
        return self._transition(
            job_id,
            "SET state = :cancelled, finished_at = :now, updated_at = :now, "
            "state_shard = :shard, expires_at = :ttl REMOVE lease_until",
            values,
            "state IN (:w0, :w1, :w2)",
        )

    def release(self, job_id: str) -> tuple[bool, Job | None, str | None]:
        """scheduled -> queued, due now: (done, job before, its schedule name). On refusal the
        job as it is comes back (None if there is no such job)."""
        return self._transition(
            job_id,
            "SET state = :queued, updated_at = :now, run_at = :now REMOVE state_shard",
            {
                ":queued": _s(JobState.QUEUED.value),
                ":scheduled": _s(JobState.SCHEDULED.value),
                ":now": _s(iso(utcnow())),
            },
            "state = :scheduled",
        )

    def _transition(
        self, job_id: str, update: str, values: dict[str, AttributeValueTypeDef], condition: str
    ) -> tuple[bool, Job | None, str | None]:
        """An operator's conditional change of a job: (done, the job before, its schedule
        name); on refusal the job as it is (None if there is no such job)."""
        from botocore.exceptions import ClientError

        try:
            response = self._update(
                job_id,
                update,
                values,
                condition=f"attribute_exists(pk) AND {condition}",
                returns="ALL_OLD",
                on_conflict="ALL_OLD",
            )
        except ClientError as exc:
            old = _conflict_item(exc)
            return False, job_from_item(old) if old else None, None
        old_item: dict[str, Any] = response["Attributes"]
        return True, job_from_item(old_item), old_item.get("schedule_name", {}).get("S")

    def heartbeat(
        self, job_id: str, attempt: int, lease_seconds: float, progress: Any = None
    ) -> bool:
        """Extend a running attempt's lease to now + `lease_seconds` (and record `progress`,
        if given, in the same write); False when this attempt no longer holds the job."""
        now = utcnow()
        update = "SET lease_until = :lease, updated_at = :now"
        values: dict[str, AttributeValueTypeDef] = {
            ":lease": _n(int(now.timestamp() * 1000) + int(lease_seconds * 1000)),
            ":now": _s(iso(now)),
        }
        if progress is not None:
            update += ", progress = :progress"
            values[":progress"] = _json(progress)
        return self._finish(job_id, attempt, update, values)

    # -- listing ---------------------------------------------------------------------------

    def query_index(
        self, index: str, key: str, limit: int, *, newest_first: bool = True
    ) -> list[tuple[str, str]]:
        """(sort key, job id) of up to `limit` items per shard of `key` in `index`."""
        attr = "type_shard" if index == BY_TYPE else "state_shard"
        sort = "created_at" if index == BY_TYPE else "updated_at"
        found: list[tuple[str, str]] = []
        for shard in range(INDEX_SHARDS):
            for item in self._query(index, attr, f"{key}#{shard}", limit, newest_first):
                found.append((item[sort]["S"], item["pk"]["S"]))
        found.sort(reverse=newest_first)
        return found

    def _query(
        self, index: str, attr: str, value: str, limit: int, newest_first: bool
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": attr},
            "ExpressionAttributeValues": {":v": _s(value)},
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        seen = 0
        while True:
            response = aws.dynamodb().query(**kwargs)
            for item in response.get("Items", []):
                yield item
                seen += 1
                if seen >= limit:
                    return
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- helpers ---------------------------------------------------------------------------

    def _finish(
        self,
        job_id: str,
        attempt: int,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        *,
        until: float | None = None,
    ) -> bool:
        values = {**values, ":attempt": _n(attempt), ":held": _s(JobState.RUNNING.value)}
        condition = "state = :held AND attempts = :attempt"
        return self._conditional(job_id, update, values, condition, until=until)

    def _conditional(
        self,
        job_id: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        condition: str,
        *,
        until: float | None = None,
    ) -> bool:
        """One conditional write: True if it held, False if its condition failed. Errors that
        may pass are retried (beyond botocore's own attempts) until `until`, if given."""
        from botocore.exceptions import BotoCoreError, ClientError

        pause, tries = 0.05, 0
        while True:
            tries += 1
            try:
                self._update(job_id, update, values, condition=condition, on_conflict="ALL_OLD")
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ConditionalCheckFailedException":
                    # A retry (botocore's or ours) of a write whose first try landed fails its
                    # condition on its own result: that is a success.
                    retried = tries > 1 or _retried(exc)
                    return retried and _applied(update, values, _conflict_item(exc))
                if code not in _PASSING_ERRORS or not _time_for(pause, until):
                    raise
            except BotoCoreError:  # no answer: the network, a timeout
                if not _time_for(pause, until):
                    raise
            else:
                return True
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _update(
        self,
        job_id: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        *,
        condition: str | None = None,
        returns: str = "NONE",
        on_conflict: str = "NONE",
    ) -> Any:
        (update, condition_), names = _placeholders(update, condition or "")
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": _s(job_id)},
            "UpdateExpression": update,
            "ExpressionAttributeNames": dict(names),  # the cached dict is shared
            "ExpressionAttributeValues": values,
            "ReturnValues": returns,
            "ReturnValuesOnConditionCheckFailure": on_conflict,
        }
        if condition_:
            kwargs["ConditionExpression"] = condition_
        return aws.dynamodb().update_item(**kwargs)
