"""Reads for paged job listings (`jobkit.job_listing`): the sparse `by_state` index and the job
pages, newest first, from a position on. Queries only, never a Scan.

Positions: an index entry is at (updated_at, job id); a page at its sort key (ISO time of the
batch + a random tail). The index may hold many entries with one `updated_at` (a batch of
delayed jobs enqueued at one millisecond) and DynamoDB does not order those by job id, so a
read never stops inside such a group: it reads the whole group, and the caller orders it.
Its public calls raise `ServiceError` for a failed AWS call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobkit import aws
from jobkit.items import s
from jobkit.store_items import BY_STATE

# (page key, [(job type, job id), ...] in the order the batch claimed them)
Page = tuple[str, list[tuple[str, str]]]
READ_LIMIT = 200  # items a Query asks for at once


@aws.service_errors
def index_below(
    table: str,
    shard_key: str,
    below: tuple[str, str] | None,
    count: int,
    bounds: tuple[str | None, str | None] = (None, None),
    keep: Callable[[str], bool] | None = None,
) -> tuple[list[tuple[str, str]], bool]:
    """(updated_at, job id) of at least `count` entries of one `by_state` shard (`state#n`)
    that come after `below` newest first (all there are if fewer), with every entry of the
    last one's `updated_at`; and whether more may follow. `bounds`: the lowest and highest
    `updated_at` (inclusive); `keep(job id)`: the entries wanted (the others are skipped)."""
    low, high = bounds
    tops = [x for x in (high, below[0] if below else None) if x is not None]
    key = _key_range("state_shard", shard_key, "updated_at", low, min(tops) if tops else None)
    if key is None:
        return [], False
    found: list[tuple[str, str]] = []
    request = {**key, "TableName": table, "IndexName": BY_STATE, "ScanIndexForward": False}
    for item in _query(request, min(READ_LIMIT, count + 1)):
        entry = (item["updated_at"]["S"], item["pk"]["S"])
        if (below is not None and entry >= below) or (keep is not None and not keep(entry[1])):
            continue  # at or before the position (newest first), or not wanted
        if len(found) >= count and entry[0] != found[-1][0]:
            return found, True
        found.append(entry)
    return found, False


@aws.service_errors
def pages_below(
    table: str,
    queue: str,
    top: str | None,
    entries: int,
    low: str | None = None,
    keep: Callable[[str, str], bool] | None = None,
) -> tuple[list[Page], bool]:
    """Whole pages of `queue`, newest first, from the page `top` on (that one included), until
    those below `top` name at least `entries` jobs (that `keep(type, id)`, if given); and
    whether more may follow. `low`: no page older than that key."""
    key = _key_range("queue", queue, "page", low, top)
    if key is None:
        return [], False
    found: list[Page] = []
    counted = 0
    request = {**key, "TableName": table, "ScanIndexForward": False}
    for item in _query(request, min(READ_LIMIT, entries // 5 + 2)):
        if counted >= entries:
            return found, True
        page = _page(item)
        found.append(page)
        if page[0] != top:
            counted += sum(1 for job in page[1] if keep is None or keep(*job))
    return found, False


def _key_range(
    hash_name: str, hash_value: str, sort_name: str, low: str | None, top: str | None
) -> dict[str, Any] | None:
    """A Query's key condition: `hash_name` is `hash_value`, `sort_name` from `low` to `top`
    (inclusive, either open); None when the range is empty."""
    if low is not None and top is not None and low > top:
        return None
    names = {"#h": hash_name}
    values: dict[str, Any] = {":h": s(hash_value)}
    condition = "#h = :h"
    if low is not None or top is not None:
        names["#s"] = sort_name
    if low is not None and top is not None:
        condition += " AND #s BETWEEN :low AND :top"
        values |= {":low": s(low), ":top": s(top)}
    elif low is not None:
        condition += " AND #s >= :low"
        values[":low"] = s(low)
    elif top is not None:
        condition += " AND #s <= :top"
        values[":top"] = s(top)
    return {
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


@aws.service_errors
def pages_between(table: str, queue: str, low: str, high: str) -> list[Page]:
    """Every page of `queue` from key `low` (included) to `high` (excluded), newest first."""
    key = _key_range("queue", queue, "page", low, high)
    if key is None or low == high:
        return []
    request = {**key, "TableName": table, "ScanIndexForward": False}
    return [page for item in _query(request, READ_LIMIT) if (page := _page(item))[0] != high]


def _page(item: dict[str, Any]) -> Page:
    jobs = [(entry["L"][0]["S"], entry["L"][1]["S"]) for entry in item["jobs"]["L"]]
    return item["page"]["S"], jobs


def _query(request: dict[str, Any], limit: int) -> Any:
    """The items of a Query, paged through `LastEvaluatedKey`, `limit` a request."""
    kwargs = {**request, "Limit": limit}
    while True:
        response = aws.dynamodb().query(**kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
