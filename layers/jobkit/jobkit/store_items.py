"""The job log's item layout: one DynamoDB item per job, built and read here.

Item layout (attribute -> meaning):
  pk            job id (table key)
  type, queue, state, attempts, max_attempts, generation
  created_at    ISO time
  updated_at    ISO time; sort key of the `by_state` index
  state_shard   "<state>#<n>": key of `by_state`; present only off the happy path
                (scheduled, retrying, failed, cancelled), so a job that goes
                queued -> running -> succeeded writes no index entry (listings of those
                states read the pages each worker batch writes: `jobkit.store_pages`)
  lease_until   epoch ms while running: a claim may take over once it has passed
  payload, result, progress   JSON text
  error, duration_ms, started_at, finished_at, next_attempt_at
  run_at, schedule_name       a job with a due time, and its Scheduler schedule (if any)
  expires_at    epoch seconds, DynamoDB TTL of a finished job
  dead_letter_due  true from a failure until its dead letter is in the DLQ
"""

from __future__ import annotations

import json
import re
import time
import zlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jobkit.items import as_json, n, plain, s
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
BY_STATE = "by_state"


# Every attribute of a job's item (see the layout above).
ATTRIBUTES = (
    "pk",
    "type",
    "queue",
    "state",
    "attempts",
    "max_attempts",
    "generation",
    "created_at",
    "updated_at",
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
    "run_at",
    "schedule_name",
)
# Those of them that are DynamoDB reserved words (tests/unit/test_store_names.py checks this
# against the list): only these get a `#name` placeholder in an expression, since every
# placeholder is one more entry botocore serialises and signs on each call.
RESERVED = ("type", "state", "result", "error")
_NAME = re.compile(r"(?<![:#\w])(" + "|".join(RESERVED) + r")\b")


@lru_cache(maxsize=128)
def placeholders(*expressions: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """Write every reserved attribute name as `#name` (DynamoDB reserves state, result...)."""
    names: dict[str, str] = {}

    def sub(match: re.Match[str]) -> str:
        names[f"#{match.group(1)}"] = match.group(1)
        return f"#{match.group(1)}"

    return tuple(_NAME.sub(sub, e) for e in expressions), names


def shard_of(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % INDEX_SHARDS


def now_ms() -> int:
    return int(time.time() * 1000)


def ttl(retention: timedelta, now: datetime) -> AttributeValueTypeDef:
    """The `expires_at` of a job finished at `now` and kept for `retention`."""
    return n(int((now + retention).timestamp()))


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
        "pk": s(job_id),
        "type": s(job_type),
        "queue": s(queue),
        "state": s(state.value),
        "attempts": n(0),
        "max_attempts": n(max_attempts),
        "generation": n(0),
        "created_at": s(stamp),
        "updated_at": s(stamp),
        "payload": as_json(payload),
    }
    if run_at is not None:
        item["run_at"] = s(iso(run_at))
    if schedule:
        item["schedule_name"] = s(schedule)
    if state in INDEXED_STATES:
        item["state_shard"] = s(f"{state.value}#{shard_of(job_id)}")
    return item


def job_from_item(item: dict[str, Any]) -> Job:
    """Decode a low-level DynamoDB item."""

    def get(name: str) -> Any:
        return plain(item[name]) if name in item else None

    def loads(name: str) -> Any:
        raw = get(name)
        return None if raw is None else json.loads(raw)

    state = get("state")
    return Job(
        id=get("pk"),
        type=get("type"),
        queue=get("queue"),
        state=JobState(state),
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
        lease_until=_from_ms(get("lease_until")) if state == "running" else None,
        dead_letter_due=bool(get("dead_letter_due")),
        next_attempt_at=get("next_attempt_at") if state == "retrying" else None,
    )


def _from_ms(value: int | float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)
