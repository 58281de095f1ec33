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
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jobkit import aws
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
_FINISHED = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value)


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


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _json(value: Any) -> AttributeValueTypeDef:
    return {"S": json.dumps(value, separators=(",", ":"), default=str)}


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
    )


class ClaimOutcome(Enum):
    CLAIMED = "claimed"  # this worker runs the job now
    FINISHED = "finished"  # already succeeded, failed or cancelled: drop the message
    BUSY = "busy"  # another worker holds an unexpired lease: look again when it ends
    MISSING = "missing"  # no such job in the log (a producer that skipped enqueue)


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    job: Job | None = None
    lease_remaining: float = 0.0


def _conflict_item(exc: Exception) -> dict[str, Any] | None:
    """The item as it was when a write's condition failed (None if there was none);
    any other error is raised again."""
    from botocore.exceptions import ClientError

    if not (
        isinstance(exc, ClientError)
        and exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
    ):
        raise exc
    return dict(exc.response.get("Item") or {}) or None  # type: ignore[call-overload]


def _ttl(retention: timedelta, now: datetime) -> AttributeValueTypeDef:
    return _n(int((now + retention).timestamp()))


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
            return False, job_from_item(_conflict_item(exc) or {})
        return True, job_from_item(item)

    def put_many(self, items: list[Item], attempts: int = 6) -> list[Item]:
        """BatchWriteItem, 25 at a time, retrying unprocessed items with backoff.

        Returns the items that could not be written. BatchWriteItem has no conditions, so
        callers check for existing ids first (see `Jobkit.enqueue_many`).
        """
        failed: list[Item] = []
        for start in range(0, len(items), 25):
            pending = [{"PutRequest": {"Item": it}} for it in items[start : start + 25]]
            for attempt in range(attempts):
                response = aws.dynamodb().batch_write_item(RequestItems={self.table: pending})  # type: ignore[dict-item]
                pending = list(response.get("UnprocessedItems", {}).get(self.table, []))  # type: ignore[arg-type]
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            failed.extend(req["PutRequest"]["Item"] for req in pending)
        return failed

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

    def mark_send_failed(self, job_id: str, error: str, retention: timedelta) -> None:
        """The message never reached its queue: the log must say so, or the job is lost."""
        now = utcnow()
        self._update(
            job_id,
            "SET state = :failed, error = :error, updated_at = :now, finished_at = :now, "
            "state_shard = :shard, expires_at = :ttl",
            {
                ":failed": _s(JobState.FAILED.value),
                ":error": _s(error),
                ":now": _s(iso(now)),
                ":shard": _s(f"failed#{shard_of(job_id)}"),
                ":ttl": _ttl(retention, now),
            },
        )

    def requeue(self, job_id: str, generation: int | None = None) -> Job:
        """failed -> queued with fresh attempts (retry by id, DLQ redrive).

        With `generation`, only if the job is still the failure that was dead-lettered.
        """
        condition = "state = :failed"
        values: dict[str, AttributeValueTypeDef] = {
            ":failed": _s(JobState.FAILED.value),
            ":queued": _s(JobState.QUEUED.value),
            ":zero": _n(0),
            ":one": _n(1),
            ":now": _s(iso(utcnow())),
        }
        if generation is not None:
            condition += " AND generation = :gen"
            values[":gen"] = _n(generation)
        response = self._update(
            job_id,
            "SET state = :queued, attempts = :zero, generation = generation + :one, "
            "updated_at = :now REMOVE state_shard, expires_at, finished_at, lease_until",
            values,
            condition=condition,
            returns="ALL_NEW",
        )
        return job_from_item(response["Attributes"])

    # -- workers ---------------------------------------------------------------------------

    def claim(
        self,
        job_id: str,
        lease_seconds: float,
        dead_letter_generation: int | None = None,
    ) -> Claim:
        """Take the job for one attempt: running, attempts + 1, lease until now + timeout.

        Allowed from queued or retrying, or from running once the lease has passed (the
        previous worker crashed or timed out). A redriven dead-letter message
        (`dead_letter_generation`) may also take a failed job of that generation, with fresh
        attempts.
        """
        from botocore.exceptions import ClientError

        now = utcnow()
        now_ms_ = int(now.timestamp() * 1000)
        values: dict[str, AttributeValueTypeDef] = {
            ":running": _s(JobState.RUNNING.value),
            ":scheduled": _s(JobState.SCHEDULED.value),
            ":queued": _s(JobState.QUEUED.value),
            ":retrying": _s(JobState.RETRYING.value),
            ":one": _n(1),
            ":now": _s(iso(now)),
            ":now_ms": _n(now_ms_),
            ":lease": _n(now_ms_ + int(lease_seconds * 1000)),
        }
        condition = (
            "state IN (:scheduled, :queued, :retrying) "
            "OR (state = :running AND lease_until < :now_ms)"
        )
        update = (
            "SET state = :running, attempts = attempts + :one, lease_until = :lease, "
            "started_at = :now, updated_at = :now REMOVE state_shard"
        )
        if dead_letter_generation is not None:
            condition = "state = :failed AND generation = :gen"
            update = (
                "SET state = :running, attempts = :one, generation = generation + :one, "
                "lease_until = :lease, started_at = :now, updated_at = :now "
                "REMOVE state_shard, expires_at, finished_at"
            )
            values.pop(":scheduled")
            values.pop(":queued")
            values.pop(":retrying")
            values.pop(":now_ms")
            values[":failed"] = _s(JobState.FAILED.value)
            values[":gen"] = _n(dead_letter_generation)
        try:
            response = self._update(
                job_id,
                update,
                values,
                condition=f"attribute_exists(pk) AND ({condition})",
                returns="ALL_NEW",
                on_conflict="ALL_OLD",
            )
        except ClientError as exc:
            old_item = _conflict_item(exc)
            if old_item is None:
                return Claim(ClaimOutcome.MISSING)
            job = job_from_item(old_item)
            if job.state == JobState.RUNNING:
                lease_ms = int(old_item.get("lease_until", {}).get("N", "0"))
                return Claim(ClaimOutcome.BUSY, job, max((lease_ms - now_ms_) / 1000, 0.0))
            if job.state.finished:
                return Claim(ClaimOutcome.FINISHED, job)
            # queued/retrying again: a dead letter of an older generation, reset since
            return Claim(ClaimOutcome.FINISHED, job)
        return Claim(ClaimOutcome.CLAIMED, job_from_item(response["Attributes"]))

    def adopt(
        self,
        job_id: str,
        job_type: str,
        queue: str,
        max_attempts: int,
        payload: dict[str, Any],
        lease_seconds: float,
    ) -> Claim:
        """Create the log item of a job whose producer sent it straight to SQS, claimed."""
        item = new_item(job_id, job_type, queue, max_attempts, payload, JobState.RUNNING)
        item["attempts"] = _n(1)
        item["started_at"] = item["updated_at"]
        item["lease_until"] = _n(now_ms() + int(lease_seconds * 1000))
        created, job = self.put_new(item)
        if created:
            return Claim(ClaimOutcome.CLAIMED, job)
        return self.claim(job_id, lease_seconds)

    def succeed(
        self, job_id: str, attempt: int, result: Any, duration_ms: int, retention: timedelta
    ) -> bool:
        """running -> succeeded; False when this attempt no longer holds the job."""
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
        )

    def retrying(self, job_id: str, attempt: int, error: str, delay: float) -> bool:
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
        )

    def fail(self, job_id: str, attempt: int | None, error: str, retention: timedelta) -> bool:
        """-> failed. With `attempt`, only from that running attempt; without, from any state
        but a finished one (a job the worker could not even claim: unknown type, ...)."""
        now = utcnow()
        values: dict[str, AttributeValueTypeDef] = {
            ":failed": _s(JobState.FAILED.value),
            ":error": _s(error),
            ":now": _s(iso(now)),
            ":shard": _s(f"failed#{shard_of(job_id)}"),
            ":ttl": _ttl(retention, now),
        }
        update = (
            "SET state = :failed, error = :error, finished_at = :now, updated_at = :now, "
            "state_shard = :shard, expires_at = :ttl REMOVE lease_until"
        )
        if attempt is not None:
            return self._finish(job_id, attempt, update, values)
        values.update({f":f{i}": _s(s) for i, s in enumerate(_FINISHED)})
        return self._conditional(
            job_id, update, values, "attribute_exists(pk) AND NOT state IN (:f0, :f1, :f2)"
        )

    def cancel(self, job_id: str, retention: timedelta) -> tuple[bool, Job | None, str | None]:
        """scheduled | queued | retrying -> cancelled: (done, job before, its schedule name).

        On refusal the job as it is comes back (None if there is no such job)."""
        from botocore.exceptions import ClientError

        now = utcnow()
        values: dict[str, AttributeValueTypeDef] = {
            ":cancelled": _s(JobState.CANCELLED.value),
            ":now": _s(iso(now)),
            ":shard": _s(f"cancelled#{shard_of(job_id)}"),
            ":ttl": _ttl(retention, now),
            **{f":w{i}": _s(s.value) for i, s in enumerate(CANCELLABLE)},
        }
        try:
            response = self._update(
                job_id,
                "SET state = :cancelled, finished_at = :now, updated_at = :now, "
                "state_shard = :shard, expires_at = :ttl REMOVE lease_until",
                values,
                condition="attribute_exists(pk) AND state IN (:w0, :w1, :w2)",
                returns="ALL_OLD",
                on_conflict="ALL_OLD",
            )
        except ClientError as exc:
            old = _conflict_item(exc)
            return False, job_from_item(old) if old else None, None
        old_item: dict[str, Any] = response["Attributes"]
        return True, job_from_item(old_item), old_item.get("schedule_name", {}).get("S")

    def report_progress(self, job_id: str, attempt: int, progress: Any) -> bool:
        return self._finish(
            job_id,
            attempt,
            "SET progress = :progress, updated_at = :now",
            {":progress": _json(progress), ":now": _s(iso(utcnow()))},
            state=JobState.RUNNING,
        )

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
        state: JobState = JobState.RUNNING,
    ) -> bool:
        values = {**values, ":attempt": _n(attempt), ":held": _s(state.value)}
        return self._conditional(job_id, update, values, "state = :held AND attempts = :attempt")

    def _conditional(
        self, job_id: str, update: str, values: dict[str, AttributeValueTypeDef], condition: str
    ) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._update(job_id, update, values, condition=condition)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

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
