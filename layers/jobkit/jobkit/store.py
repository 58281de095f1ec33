"""The job log in DynamoDB: one item per job, every state change one conditional write.

`JobLog` is the adapter over the table: what producers and operators write and read here,
claims in `jobkit.store_claims`, attempts' outcomes in `jobkit.store_outcomes`, the item layout in
`jobkit.store_items`. Its public calls raise `ServiceError` for a failed AWS call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.errors import ServiceError
from jobkit.items import n, s
from jobkit.models import Job, JobState, iso, utcnow
from jobkit.store_claims import Claim, ClaimOutcome, Claims, Expected
from jobkit.store_items import (
    BY_STATE,
    CANCELLABLE,
    INDEX_SHARDS,
    INDEXED_STATES,
    Item,
    job_from_item,
    new_item,
    shard_of,
    ttl,
)
from jobkit.store_outcomes import Outcomes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "BY_STATE",
    "CANCELLABLE",
    "INDEXED_STATES",
    "Claim",
    "ClaimOutcome",
    "Expected",
    "Item",
    "JobLog",
    "job_from_item",
    "new_item",
]


class JobLog(Claims, Outcomes):
    """Adapter over the job-log table. Conditional writes make each transition happen once."""

    # -- producers -------------------------------------------------------------------------

    @aws.service_errors
    def put_new_many(self, items: list[Item]) -> list[tuple[bool, Job] | ServiceError]:
        """`put_new` for each item, in parallel: (created, job), or the error of that write.

        One conditional PutItem per job rather than BatchWriteItem, which has no conditions:
        DynamoDB bills the same write units for either (a unit per KB of each item), and only
        the condition makes one caller the creator of an id and hands everyone else the job
        that exists, untouched.
        """

        def put(item: Item) -> tuple[bool, Job] | ServiceError:
            try:
                return self.put_new(item)
            except ServiceError as exc:
                return exc

        if len(items) <= 1:
            return [put(item) for item in items]
        with ThreadPoolExecutor(min(aws.ENQUEUE_THREADS, len(items))) as pool:
            return list(pool.map(put, items))

    @aws.service_errors
    def get(self, job_id: str) -> Job | None:
        response = aws.dynamodb().get_item(
            TableName=self.table, Key={"pk": s(job_id)}, ConsistentRead=True
        )
        item = response.get("Item")
        return job_from_item(item) if item else None

    @aws.service_errors
    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """BatchGetItem, 100 keys at a time, retrying unprocessed keys."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), 100):
            keys: list[Any] = [{"pk": s(i)} for i in ids[start : start + 100]]
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

    @aws.service_errors
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
                ":failed": s(JobState.FAILED.value),
                ":error": s(error),
                ":now": s(iso(now)),
                ":shard": s(f"failed#{shard_of(job.id)}"),
                ":ttl": ttl(retention, now),
                ":sent": s(job.state.value),
                ":zero": n(0),
                ":gen": n(job.generation),
            },
            "state = :sent AND attempts = :zero AND generation = :gen",
        )

    @aws.service_errors
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
                    ":failed": s(JobState.FAILED.value),
                    ":queued": s(JobState.QUEUED.value),
                    ":zero": n(0),
                    ":one": n(1),
                    ":now": s(iso(utcnow())),
                    ":gen": n(generation),
                },
                condition="state = :failed AND generation = :gen",
                returns="ALL_NEW",
            )
        except ClientError as exc:
            aws.conflict_item(exc)  # anything but a failed condition is raised again
            return None
        return job_from_item(response["Attributes"])

    # -- operators -------------------------------------------------------------------------

    @aws.service_errors
    def cancel(self, job_id: str, retention: timedelta) -> tuple[bool, Job | None, str | None]:
        """scheduled | queued | retrying -> cancelled: (done, job before, its schedule name).

        On refusal the job as it is comes back (None if there is no such job)."""
        now = utcnow()
        values: dict[str, AttributeValueTypeDef] = {
            ":cancelled": s(JobState.CANCELLED.value),
            ":now": s(iso(now)),
            ":shard": s(f"cancelled#{shard_of(job_id)}"),
            ":ttl": ttl(retention, now),
            **{f":w{i}": s(state.value) for i, state in enumerate(CANCELLABLE)},
        }
        return self._transition(
            job_id,
            "SET state = :cancelled, finished_at = :now, updated_at = :now, "
            "state_shard = :shard, expires_at = :ttl REMOVE lease_until",
            values,
            "state IN (:w0, :w1, :w2)",
        )

    @aws.service_errors
    def release(self, job_id: str) -> tuple[bool, Job | None, str | None]:
        """scheduled -> queued, due now: (done, job before, its schedule name). On refusal the
        job as it is comes back (None if there is no such job)."""
        return self._transition(
            job_id,
            "SET state = :queued, updated_at = :now, run_at = :now REMOVE state_shard",
            {
                ":queued": s(JobState.QUEUED.value),
                ":scheduled": s(JobState.SCHEDULED.value),
                ":now": s(iso(utcnow())),
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
            old = aws.conflict_item(exc)
            return False, job_from_item(old) if old else None, None
        old_item: dict[str, Any] = response["Attributes"]
        return True, job_from_item(old_item), old_item.get("schedule_name", {}).get("S")

    # -- listing ---------------------------------------------------------------------------

    @aws.service_errors
    def query_index(
        self, index: str, key: str, limit: int, *, newest_first: bool = True
    ) -> list[tuple[str, str]]:
        """(updated_at, job id) of up to `limit` items per shard of state `key` in `index`
        (the sparse `by_state`)."""
        found: list[tuple[str, str]] = []
        for shard in range(INDEX_SHARDS):
            for item in self._query(index, "state_shard", f"{key}#{shard}", limit, newest_first):
                found.append((item["updated_at"]["S"], item["pk"]["S"]))
        found.sort(reverse=newest_first)
        return found

    @aws.service_errors
    def count_index(self, index: str, key: str) -> int:
        """How many items of state `key` the sparse `index` holds: one `Select=COUNT` Query
        per shard (paged through `LastEvaluatedKey`), the shards side by side, no item read."""
        with ThreadPoolExecutor(INDEX_SHARDS) as pool:
            return sum(
                pool.map(
                    lambda shard: self._count_shard(index, f"{key}#{shard}"), range(INDEX_SHARDS)
                )
            )

    def _count_shard(self, index: str, value: str) -> int:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": "state_shard"},
            "ExpressionAttributeValues": {":v": s(value)},
            "Select": "COUNT",
        }
        total = 0
        while True:
            response = aws.dynamodb().query(**kwargs)
            total += response.get("Count", 0)
            if "LastEvaluatedKey" not in response:
                return total
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _query(
        self, index: str, attr: str, value: str, limit: int, newest_first: bool
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": attr},
            "ExpressionAttributeValues": {":v": s(value)},
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
