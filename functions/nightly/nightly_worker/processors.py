"""Processors of the nightly queue.

`nightly.fan_out` is what the nightly schedule enqueues (its job id is the schedule's name and
the run's scheduled time, so a double fire runs once). It enqueues one `nightly.refresh_account`
child per account with `enqueue_many` (25 log writes and 10 messages a request) and reports
progress on itself after each chunk. Child ids are `<parent id>/<account>`: a retried parent
skips the children it already enqueued.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jobkit.client import EnqueueRequest, Jobkit, default_client
from jobkit.errors import TransientError
from jobkit.worker import JobContext, Worker
from jobkit_apps.nightly import (
    FAN_OUT,
    QUEUE,
    REFRESH_ACCOUNT,
    FanOutPayload,
    RefreshAccountPayload,
)

worker = Worker(queue=QUEUE)


def account_ids(count: int) -> Iterator[str]:
    """The accounts to refresh. A stand-in: a real job pages through its accounts table."""
    return (f"acct-{n:07d}" for n in range(1, count + 1))


def fan_out(
    payload: FanOutPayload, run_id: str, report: Any, client: Jobkit | None = None
) -> dict[str, int]:
    """Enqueue the children chunk by chunk; `report(progress)` after each chunk."""
    client = client or default_client()
    enqueued = existing = 0
    chunk: list[EnqueueRequest] = []

    def flush() -> None:
        nonlocal enqueued, existing
        result = client.enqueue_many(chunk)
        if result.failed:
            first = result.failed[0].error
            raise TransientError(f"{len(result.failed)} children not enqueued: {first}")
        enqueued += len(result.created)
        existing += len(result.existing)
        chunk.clear()
        report({"enqueued": enqueued + existing, "total": payload.accounts})

    for account in account_ids(payload.accounts):
        child = RefreshAccountPayload(account_id=account, run=run_id)
        chunk.append(EnqueueRequest(REFRESH_ACCOUNT, child, job_id=f"{run_id}/{account}"))
        if len(chunk) >= payload.chunk:
            flush()
    if chunk or not payload.accounts:
        flush()
    return {"children": enqueued, "already_enqueued": existing}


@worker.processor(FAN_OUT)
def run_fan_out(payload: FanOutPayload, ctx: JobContext) -> dict[str, int]:
    # The function's own settings (those the worker runs with) are the producer's too.
    return fan_out(payload, ctx.job_id, ctx.report_progress, Jobkit(worker.settings))


@worker.processor(REFRESH_ACCOUNT)
def refresh_account(payload: RefreshAccountPayload, ctx: JobContext) -> dict[str, str]:
    """Refresh one account (the example does no real work)."""
    return {"account_id": payload.account_id}
