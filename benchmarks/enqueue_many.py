"""enqueue_many: one conditional PutItem per job (today) against BatchWriteItem (before).

N jobs go in with one `enqueue_many` call, three ways: generated ids, caller-given ids that
are all new, and caller-given ids of which every tenth was enqueued before (the caller
sending a batch again). Each way twice, in the same run and the same kind of fresh moto
stack: with today's `Jobkit.enqueue_many` (a conditional PutItem per job,
`jobkit.aws.ENQUEUE_THREADS` in parallel, no read first) and with a baseline that does what
it did before (`batch_enqueue_many` below: BatchGetItem of the given ids 100 a call,
BatchWriteItem of the new ones 25 a call, then the same SendMessageBatch 10 a call).

Two passes. The counting pass hooks the request meter of requests_per_job.py on jobkit's
clients (requests; write units of the table and of each index from the item images around
each write, a failed conditional put billed as DynamoDB bills it; read units, 1 per key read
whether found or not). The timing pass runs unhooked and times the part of the call that
differs, the DynamoDB writes (and reads) as each side makes them (see `timed`): wall time
(`perf_counter`), the process's CPU during it, and the CPU spent in moto's request handler
(per thread: `thread_time`), several runs of each side, alternating which goes first. moto
answers in-process, under the GIL: its wall times are not DynamoDB's (see `aws_estimate`).
Last, the property the condition is for: two producers that enqueue the same new ids at the
same time.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks import capacity
from benchmarks._common import Result, bench_job_type, moto_stack, payload, prices, template
from benchmarks.requests_per_job import Meter, Tally

N_JOBS = 1000
RUNS = 5  # timed runs per side and case
EXISTING_EVERY = 10  # in the "exists" case every tenth given id was enqueued before
RACE_IDS = 100  # ids both producers enqueue at once in the concurrency check
SIDES = ("conditional", "batch")
SIDE_TITLE = {
    "conditional": "conditional PutItem (today)",
    "batch": "BatchGetItem + BatchWriteItem (before)",
}
# Latencies of one in-region call on AWS, assumed (not measured here) for the estimate.
PUT_MS = (5.0, 10.0)  # one PutItem
BATCH_MS = (10.0, 30.0)  # one BatchWriteItem of 25 items (a BatchGetItem of 100 keys alike)


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    given_ids: bool
    existing: bool  # every EXISTING_EVERY-th given id is in the log already


CASES = [
    Case("generated", "generated ids", False, False),
    Case("given", "given ids, all new", True, False),
    Case("exists", "given ids, 10 % exist", True, True),
]


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


# -- figures -----------------------------------------------------------------------------------


def dollars(t: Tally, n: int) -> dict[str, float]:
    """US dollars per million jobs of the enqueue call alone (the rest of a job is the same on
    both sides), from prices.json."""
    p = prices()
    ddb = p["dynamodb_on_demand"]
    per = 1.0 / n
    return {
        "dynamodb": t.write_units * per * ddb["per_million_write_request_units"]
        + t.read_units * per * ddb["per_million_read_request_units"],
        "sqs": t.sqs_billed * per * p["sqs"]["standard_per_million_requests"],
    }


def aws_estimate(t: Tally, client_cpu: float) -> tuple[float, float]:
    """Seconds the DynamoDB part of one call would take on AWS: an estimate from the assumed
    latencies (PUT_MS, BATCH_MS), the requests counted and the client's own CPU measured here
    (jobkit + botocore, on one core of this machine), not a measurement. Batch calls go one
    after the other: their waits and their CPU add up. Puts go in ENQUEUE_THREADS lanes whose
    waits overlap, but the GIL runs their CPU one thread at a time: at least the longer of
    the two, at most both."""
    from jobkit import aws

    rounds = t.calls["dynamodb:PutItem"] / aws.ENQUEUE_THREADS
    batches = t.calls["dynamodb:BatchWriteItem"] + t.calls["dynamodb:BatchGetItem"]
    low = (rounds * PUT_MS[0] + batches * BATCH_MS[0]) / 1e3
    high = (rounds * PUT_MS[1] + batches * BATCH_MS[1]) / 1e3
    if rounds:
        return max(low, client_cpu), high + client_cpu
    return low + client_cpu, high + client_cpu


def _stats(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def run(quick: bool = False) -> list[Result]:
    from jobkit import aws

    n = 100 if quick else N_JOBS
    runs = 2 if quick else RUNS
    started = time.monotonic()
    print(
        f"\n== 6. enqueue_many: conditional puts against BatchWriteItem ({n:,} jobs a call, "
        f"{aws.ENQUEUE_THREADS} threads, moto in-process) =="
    )
    tallies = {(c.key, side): count(c, side, n) for c in CASES for side in SIDES}
    timings: dict[tuple[str, str], list[Timing]] = {key: [] for key in tallies}
    for r in range(runs):
        for c in CASES:
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                timings[(c.key, side)].append(timed(c, side, n))
    races = {side: race(side) for side in SIDES}

    keys = list(tallies)
    width = 12
    print("  " + " " * 36 + "".join(f"{c.title:>{2 * width}}" for c in CASES))
    print(
        "  " + f"{'per job':<36}" + "".join(f"{'cond.':>{width}}{'batch':>{width}}" for _ in CASES)
    )

    def line(label: str, values: list[float], fmt: str = ".3f") -> None:
        cells = "".join("-".rjust(width) if v == 0 else f"{v:>{width}{fmt}}" for v in values)
        print(f"  {label:<36}{cells}")

    ts = [tallies[k] for k in keys]
    ops = sorted({op for t in ts for op in t.calls})
    for op in ops:
        line(f"  {op}", [t.calls[op] / n for t in ts])
    line("DynamoDB requests", [t.ddb_requests() / n for t in ts])
    line("DynamoDB write requests (items)", [t.item_writes / n for t in ts])
    line("  of which failed conditions", [t.failed_conditions / n for t in ts])
    line("  table write units", [t.table_wu / n for t in ts])
    indexes = capacity.indexes_of(template()["Resources"]["JobsTable"]["Properties"])
    for index in indexes:
        line(f"  index {index.name} write units", [t.index_wu[index.name] / n for t in ts])
    line("write units (all)", [t.write_units / n for t in ts])
    line("read units", [t.read_units / n for t in ts])
    line("SQS requests", [t.sqs_requests() / n for t in ts])
    costs = [dollars(t, n) for t in ts]
    print(f"  $ per million jobs, enqueue only (prices.json, {prices()['region']}):")
    line("    DynamoDB", [c["dynamodb"] for c in costs])
    line("    SQS", [c["sqs"] for c in costs])
    line("    total", [sum(c.values()) for c in costs])

    walls = {k: [t.wall for t in timings[k]] for k in keys}
    print(
        f"  wall time of the DynamoDB part of one call on moto, {runs} runs each (moto's "
        "latency is not DynamoDB's):"
    )
    line("    min ms", [_stats(walls[k])[0] * 1e3 for k in keys], ",.0f")
    line("    median ms", [_stats(walls[k])[1] * 1e3 for k in keys], ",.0f")
    line("    max ms", [_stats(walls[k])[2] * 1e3 for k in keys], ",.0f")
    ratios = {
        c.key: statistics.median(walls[(c.key, "conditional")])
        / statistics.median(walls[(c.key, "batch")])
        for c in CASES
    }
    print(
        "    median conditional / batch       "
        + "".join(f"{ratios[c.key]:>{2 * width - 1}.2f}x" for c in CASES)
    )
    cpu = {k: statistics.median([t.cpu for t in timings[k]]) for k in keys}
    moto = {k: statistics.median([t.moto for t in timings[k]]) for k in keys}
    client_cpu = {k: cpu[k] - moto[k] for k in keys}
    print("  CPU of the DynamoDB part per job, medians (µs):")
    line("    all (every thread)", [cpu[k] / n * 1e6 for k in keys], ",.0f")
    line("    in moto's handler", [moto[k] / n * 1e6 for k in keys], ",.0f")
    line("    the rest: jobkit + botocore", [client_cpu[k] / n * 1e6 for k in keys], ",.0f")
    estimates = {k: aws_estimate(tallies[k], client_cpu[k]) for k in keys}
    print(
        f"  estimate, not measured: the DynamoDB part of one call on AWS (PutItem "
        f"{PUT_MS[0]:g}-{PUT_MS[1]:g} ms in {aws.ENQUEUE_THREADS} lanes; a batch call "
        f"{BATCH_MS[0]:g}-{BATCH_MS[1]:g} ms, one after the other; plus the client CPU above, "
        "on one core like this one):"
    )
    line("    ms, from", [estimates[k][0] * 1e3 for k in keys], ",.0f")
    line("    ms, to", [estimates[k][1] * 1e3 for k in keys], ",.0f")
    print(f"  two producers, the same {RACE_IDS} new ids at once:")
    for side in SIDES:
        outcome = races[side]
        print(
            f"    {SIDE_TITLE[side]:<40} creators per id {outcome.creators / RACE_IDS:.2f}, "
            f"messages per id {outcome.messages / RACE_IDS:.2f}, jobs in the log {outcome.jobs}"
        )
    print("    (the baseline's look-ups both ran before either write: its worst interleaving)")
    print(f"  (enqueue_many benchmark: {time.monotonic() - started:.0f} s)")

    results = []
    for c in CASES:
        cond, batch = tallies[(c.key, "conditional")], tallies[(c.key, "batch")]
        results.append(
            Result(
                "enqueue_many",
                f"{c.title}: $/M jobs enqueue, cond. vs batch",
                sum(dollars(cond, n).values()) / sum(dollars(batch, n).values()),
                None,
                "x",
            )
        )
    results.append(
        Result(
            "enqueue_many",
            "given ids, 10 % exist: WU/job, conditional",
            tallies[("exists", "conditional")].write_units / n,
            None,
        )
    )
    results.append(
        Result(
            "enqueue_many",
            "given ids: DynamoDB part's wall on moto, cond./batch",
            ratios["given"],
            None,
            "x",
        )
    )
    results.append(
        Result(
            "enqueue_many",
            "creators per id, 2 producers at once (cond.)",
            races["conditional"].creators / RACE_IDS,
            None,
        )
    )
    return results
