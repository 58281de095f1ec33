"""The runs of the enqueue_many benchmark (enqueue_many.py): the baseline that does what
`enqueue_many` did before conditional puts, the counting pass, the timing pass and the race of
two producers, each in a fresh moto stack."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks import capacity
from benchmarks._common import bench_job_type, moto_stack, payload, template
from benchmarks.meter import Meter, Tally

EXISTING_EVERY = 10  # in the "exists" case every tenth given id was enqueued before
RACE_IDS = 100  # ids both producers enqueue at once in the concurrency check


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    given_ids: bool
    existing: bool  # every EXISTING_EVERY-th given id is in the log already


# -- the baseline: enqueue_many as it was -----------------------------------------------------


def batch_enqueue_many(
    client: Any, requests: Sequence[Any], between: Callable[[], object] | None = None
) -> Any:
    """What `enqueue_many` did before conditional puts, with the same outcomes (requests with
    unique ids, messages that all go out): look the given ids up (BatchGetItem, 100 a call,
    consistent), write the jobs not found with BatchWriteItem (25 a call, unprocessed items
    retried with backoff: no condition), send their messages (SendMessageBatch, 10 a call).
    `between` runs after the look-up and before the write (the concurrency check uses it)."""
    from jobkit import queues
    from jobkit.client import EnqueueManyResult, EnqueueOutcome
    from jobkit.store import job_from_item

    prepared = [
        client._prepare(r.job_type, r.payload, r.job_id, r.delay, r.run_at) for r in requests
    ]
    given = [p.envelope.id for p, r in zip(prepared, requests, strict=True) if r.job_id]
    existing = client.log.get_many(given) if given else {}
    if between is not None:
        between()
    outcomes: list[Any] = []
    new: dict[int, Any] = {}
    for index, p in enumerate(prepared):
        if p.envelope.id in existing:
            outcomes.append(EnqueueOutcome(index, p.envelope.id, existing[p.envelope.id]))
        else:
            new[index] = p
    items = {index: client._item(p) for index, p in new.items()}
    unwritten = put_many(client.log.table, list(items.values()))
    assert not unwritten, f"{len(unwritten)} items kept coming back unprocessed"
    by_queue: dict[str, list[Any]] = {}
    for index, p in new.items():
        by_queue.setdefault(p.job_type.queue, []).append(
            queues.Outgoing(str(index), p.body, p.delay_seconds)
        )
    for queue, messages in by_queue.items():
        failed = queues.send_many(client.settings.queue_url_of(queue), messages)
        assert not failed, failed
    for index, p in new.items():
        outcomes.append(EnqueueOutcome(index, p.envelope.id, job_from_item(items[index]), True))
    return EnqueueManyResult(sorted(outcomes, key=lambda o: o.index))


def put_many(table: str, items: list[Any], attempts: int = 6) -> list[Any]:
    """BatchWriteItem, 25 at a time, retrying unprocessed items with backoff (the old
    `JobLog.put_many`). Returns the items that could not be written."""
    from jobkit import aws

    failed: list[Any] = []
    for start in range(0, len(items), 25):
        pending: Any = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        for attempt in range(attempts):
            response = aws.dynamodb().batch_write_item(RequestItems={table: pending})
            pending = list(response.get("UnprocessedItems", {}).get(table, []))
            if not pending:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0))
        failed.extend(request["PutRequest"]["Item"] for request in pending)
    return failed


# -- one run -----------------------------------------------------------------------------------


def _requests(case: Case, n: int) -> list[Any]:
    from jobkit.client import EnqueueRequest

    jt = bench_job_type()
    return [
        EnqueueRequest(jt, payload(i), job_id=f"order-{i:05d}" if case.given_ids else None)
        for i in range(n)
    ]


def _existing(case: Case, requests: list[Any]) -> list[Any]:
    return requests[::EXISTING_EVERY] if case.existing else []


def _enqueue(side: str, client: Any, requests: list[Any]) -> Any:
    if side == "conditional":
        return client.enqueue_many(requests)
    return batch_enqueue_many(client, requests)


@contextmanager
def _stack(case: Case, requests: list[Any]) -> Iterator[Any]:
    """A fresh moto stack whose log already holds the case's existing jobs (enqueued with
    today's `enqueue_many`, unhooked and untimed); jobkit's clients are made."""
    from jobkit import aws

    with moto_stack() as stack:
        before = _existing(case, requests)
        if before:
            assert len(stack.client.enqueue_many(before).created) == len(before)
        aws.dynamodb()
        aws.sqs()
        yield stack


def _check(stack: Any, case: Case, requests: list[Any], result: Any) -> None:
    """Same outcome on both sides: the new jobs created, the others handed back; every job in
    the log once and one message per job in the queue."""
    import boto3

    n, old = len(requests), len(_existing(case, requests))
    assert not result.failed, result.failed[:3]
    assert (len(result.created), len(result.existing)) == (n - old, old), (
        len(result.created),
        len(result.existing),
    )
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    items = sum(
        page["Count"] for page in ddb.get_paginator("scan").paginate(TableName=stack.settings.table)
    )
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert items == n, f"{items} items in the log for {n} jobs"
    assert int(attributes["ApproximateNumberOfMessages"]) == n, attributes


def count(case: Case, side: str, n: int) -> Tally:
    """The counting pass: one run with the request meter on jobkit's clients."""
    from jobkit import aws

    table = template()["Resources"]["JobsTable"]["Properties"]
    requests = _requests(case, n)
    with _stack(case, requests) as stack:
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        meter = Meter(stack.settings.table, key_names, capacity.indexes_of(table))
        clients = dict(aws._clients)
        for client in clients.values():
            meter.hook(client)
        meter.phase = "enqueue"
        result = _enqueue(side, stack.client, requests)
        meter.phase = "check"
        assert dict(aws._clients) == clients, "jobkit made a client after the hooks were set"
        _check(stack, case, requests, result)
    return meter.tally


@dataclass
class Timing:
    wall: float  # seconds, the DynamoDB part of the call
    cpu: float  # process CPU seconds during it, every thread
    moto: float  # of which in moto's request handler


@contextmanager
def _moto_cpu() -> Iterator[list[float]]:
    """CPU seconds inside moto's request handler, summed over threads (each thread's own
    `thread_time`, so parallel calls are not counted twice)."""
    from moto.core.botocore_stubber import BotocoreStubber

    spent = [0.0]
    lock = threading.Lock()
    process_request = BotocoreStubber.process_request

    def timed(self: Any, request: Any) -> Any:
        start = time.thread_time()
        try:
            return process_request(self, request)
        finally:
            elapsed = time.thread_time() - start
            with lock:
                spent[0] += elapsed

    BotocoreStubber.process_request = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        BotocoreStubber.process_request = process_request  # type: ignore[method-assign]


def _write_phase(
    side: str, client: Any, prepared: list[Any], items: list[Any], given_ids: bool
) -> int:
    """The DynamoDB part of one call, as each side makes it: today `JobLog.put_new_many`;
    before, `JobLog.get_many` of the given ids and `put_many` of the rest. Returns the
    number of jobs created."""
    if side == "conditional":
        written = client.log.put_new_many(items)
        assert not any(isinstance(w, Exception) for w in written)
        return sum(1 for w in written if w[0])
    existing = client.log.get_many([p.envelope.id for p in prepared]) if given_ids else {}
    new = [item for p, item in zip(prepared, items, strict=True) if p.envelope.id not in existing]
    assert not put_many(client.log.table, new)
    return len(new)


def timed(case: Case, side: str, n: int) -> Timing:
    """The timing pass: one run of the DynamoDB part, unhooked. The rest of a call (payload
    validation, SendMessageBatch) is the same code on both sides, and moto's SendMessage
    works out the queue's attributes, a pass over every message in it, for each message: at
    1,000 messages the sends are most of a call's time on moto, and would only dilute this."""
    import boto3

    requests = _requests(case, n)
    with _stack(case, requests) as stack:
        client = stack.client
        prepared = [
            client._prepare(r.job_type, r.payload, r.job_id, r.delay, r.run_at) for r in requests
        ]
        items = [client._item(p) for p in prepared]
        gc.collect()
        with _moto_cpu() as moto:
            cpu, wall = time.process_time(), time.perf_counter()
            created = _write_phase(side, client, prepared, items, case.given_ids)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        old = len(_existing(case, requests))
        assert created == n - old, (created, n - old)
        scan = boto3.client("dynamodb").get_paginator("scan")
        assert sum(p["Count"] for p in scan.paginate(TableName=stack.settings.table)) == n
    return Timing(wall, cpu, moto[0])


# -- two producers, the same ids at once ------------------------------------------------------


@dataclass
class Race:
    creators: int  # outcomes with created=True, both producers together
    messages: int  # messages in the queue afterwards
    jobs: int  # items in the log


def race(side: str, n: int = RACE_IDS) -> Race:
    """Two producers enqueue the same n new ids at the same time. Today's puts start
    together (a barrier); the baseline is given its worst interleaving, both look-ups before
    either write (a barrier between them): the window in which it has no guard."""
    import boto3

    case = Case("race", "race", True, False)
    requests = _requests(case, n)
    with _stack(case, requests) as stack:
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def producer() -> None:
            client = stack.client
            if side == "conditional":
                barrier.wait()
                results.append(client.enqueue_many(requests))
            else:
                results.append(batch_enqueue_many(client, requests, between=barrier.wait))

        threads = [threading.Thread(target=producer) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        jobs = sum(
            page["Count"]
            for page in ddb.get_paginator("scan").paginate(TableName=stack.settings.table)
        )
        messages = int(
            sqs.get_queue_attributes(
                QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
    assert len(results) == 2 and not any(r.failed for r in results)
    return Race(sum(len(r.created) for r in results), messages, jobs)
