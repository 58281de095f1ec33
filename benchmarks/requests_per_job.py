"""AWS requests, capacity units and dollars per job on the happy path.

N jobs are enqueued (with `enqueue_many`, with `enqueue`, and with `enqueue_many` given
caller-chosen ids), then a poller does what Lambda's event source mapping does: ReceiveMessage
10 at a time, hand the batch to `Worker.handle`, DeleteMessageBatch the records that are not in
`batchItemFailures`. Every request is counted by the request meter (meter.py): botocore's
`before-call.*.*` event on the clients in `jobkit.aws._clients` and on the poller's own client,
DynamoDB capacity modelled from item images read around each write by a separate, uncounted
client (see capacity.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from benchmarks import capacity, stream_pages
from benchmarks._common import (
    BATCH_SIZE,
    FakeContext,
    Result,
    bench_job_type,
    deployed,
    esm_delete,
    esm_event,
    esm_receive,
    failed_ids,
    moto_stack,
    noop_processor,
    payload,
    prices,
    quiet_logs,
    template,
)
from benchmarks.meter import Meter, Tally

N_JOBS = 200
TARGET_DDB_WRITES = 3.0
TARGET_WRITE_UNITS = 4.0
TARGET_SQS_REQUESTS = 0.35


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str  # "many", "single", "many_ids"
    tracking: str = "full"  # the job type's tracking mode


SCENARIOS = [
    Scenario("enqueue_many", "many"),
    Scenario("enqueue", "single"),
    Scenario("enqueue_many + job_id", "many_ids"),
    Scenario("light", "many", "light"),
    Scenario("failures", "many", "failures"),
]


def _enqueue(scenario: Scenario, producer: Any, n: int) -> None:
    from jobkit.client import EnqueueRequest

    jt = bench_job_type(scenario.tracking)
    ids = [f"order-{i:05d}" if scenario.mode == "many_ids" else None for i in range(n)]
    if scenario.mode == "single":
        for i in range(n):
            producer.enqueue(jt, payload(i))
    else:
        result = producer.enqueue_many(
            [EnqueueRequest(jt, payload(i), job_id=ids[i]) for i in range(n)]
        )
        assert len(result.created) == n, result.failed


def _poll(meter: Meter, poller: Any, queue_url: str, worker: Any, n: int) -> None:
    """What the event source mapping does until the n jobs are done (or 3 receives come back
    empty): ReceiveMessage, Worker.handle, DeleteMessageBatch of the records not failed."""
    tally = meter.tally
    done = empty = 0
    context = FakeContext()
    while done < n and empty < 3:
        meter.phase = "poller"
        got = esm_receive(poller, queue_url)
        if not got:
            empty += 1
            continue
        meter.phase = "worker"
        with quiet_logs(tally.log):
            response = worker.handle(esm_event(got, queue_url), context)
        tally.invocations += 1
        tally.records += len(got)
        meter.phase = "poller"
        done += len(esm_delete(poller, queue_url, got, failed_ids(response)))


def drive(scenario: Scenario, n: int = N_JOBS) -> Tally:
    import boto3

    from jobkit import aws
    from jobkit.worker import Worker

    jt = bench_job_type(scenario.tracking)
    table = template()["Resources"]["JobsTable"]["Properties"]
    with moto_stack() as stack:
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        meter = Meter(stack.settings.table, key_names, capacity.indexes_of(table))
        aws.dynamodb()
        aws.sqs()
        poller = boto3.client("sqs")
        for client in [*aws._clients.values(), poller]:
            meter.hook(client)
        # as deployed: the job log's stream writes the pages (counted below), the worker none
        worker = Worker("email", settings=deployed(stack.worker_settings()))
        worker.processor(jt)(noop_processor)
        tap = stream_pages.StreamTap(stack.settings.table)  # the job log's stream, from now

        meter.phase = "enqueue"
        _enqueue(scenario, stack.client, n)
        _poll(meter, poller, stack.queue_url, worker, n)
        meter.phase = "check"
        new_clients = [c for c in aws._clients.values() if id(c) not in meter._hooked]
        assert not new_clients, "a client was created after the hooks were set: uncounted calls"
        states = Counter(
            item["state"]["S"]
            for page in meter._reader.get_paginator("scan").paginate(TableName="jobs")
            for item in page["Items"]
        )
        # (a job of a `failures` type that succeeded at once is never in the log)
        expected = {} if scenario.tracking == "failures" else {"succeeded": n}
        assert states == expected, f"not every job succeeded: {dict(states)}"
        meter.tally.stream = stream_pages.feed(meter, tap, stack.settings)
    return meter.tally


# -- dollars -------------------------------------------------------------------------------


def cost_per_million(tally: Tally, n: int, cpu_per_record: float | None) -> dict[str, float]:
    """US dollars per million jobs, by service, from prices.json."""
    p = prices()
    lam = p["lambda"]
    assumed = p["assumptions"]
    per_job = 1.0 / n
    invocations = tally.invocations * per_job
    records = tally.records / max(tally.invocations, 1)
    ddb_calls = tally.ddb_calls_in_worker / max(tally.invocations, 1)
    cpu_share = min(1.0, lam["memory_mb"] / lam["full_vcpu_at_mb"])
    cpu_ms = (cpu_per_record or 0.0) * 1000 * records / cpu_share
    duration_ms = math.ceil(
        cpu_ms
        + ddb_calls * assumed["dynamodb_write_latency_ms"]
        + assumed["lambda_invoke_overhead_ms"]
    )
    gb_seconds = lam["memory_mb"] / 1024 * duration_ms / 1000
    return {
        "sqs": tally.sqs_billed * per_job * p["sqs"]["standard_per_million_requests"],
        "dynamodb": tally.write_units
        * per_job
        * p["dynamodb_on_demand"]["per_million_write_request_units"]
        + tally.read_units * per_job * p["dynamodb_on_demand"]["per_million_read_request_units"],
        "lambda": invocations
        * (lam["per_million_requests"] + 1e6 * gb_seconds * lam["per_gb_second_x86"]),
        "logs": tally.log.bytes * per_job * p["cloudwatch_logs"]["per_gb_ingested"] / 1e3,
        "_duration_ms": float(duration_ms),
        "_cpu_ms": cpu_ms,
    }


def run(cpu_per_record: float | None = None, n: int = N_JOBS) -> list[Result]:
    print(f"\n== 3. AWS requests per job, happy path ({n} jobs, batches of {BATCH_SIZE}) ==")
    tallies = {s.name: drive(s, n) for s in SCENARIOS}
    ops = sorted({op for t in tallies.values() for op in t.calls})
    names = list(tallies)
    width = 24
    print("  requests per job by API" + "".join(f"{name:>{width}}" for name in names))
    for op in ops:
        row = "".join(f"{t.calls[op] / n:>{width}.3f}" for t in tallies.values())
        print(f"    {op:<28}{row}")

    def line(label: str, values: list[float], fmt: str = ".3f") -> None:
        print(f"  {label:<30}" + "".join(f"{v:>{width}{fmt}}" for v in values))

    ts = list(tallies.values())
    line("DynamoDB API calls / job", [t.ddb_requests() / n for t in ts])
    line("DynamoDB write requests / job", [t.item_writes / n for t in ts])
    line("  table write units / job", [t.table_wu / n for t in ts])
    for index in capacity.indexes_of(template()["Resources"]["JobsTable"]["Properties"]):
        line(f"  index {index.name} WU / job", [t.index_wu[index.name] / n for t in ts])
    line("  page write units / job", [t.page_wu / n for t in ts])
    line("write units / job (all)", [t.write_units / n for t in ts])
    line("read units / job", [t.read_units / n for t in ts])
    line("SQS API calls / job", [t.sqs_requests() / n for t in ts])
    line("SQS billed requests / job", [t.sqs_billed / n for t in ts])
    line("Lambda invocations / job", [t.invocations / n for t in ts])
    line("log bytes / job (stdout)", [t.log.bytes / n for t in ts], ".0f")
    print("  job pages from the stream (JobPagesFunction), by INSERTs per stream batch")
    for size in stream_pages.BATCHES:
        line(f"    {size:>3}: page WU / job", [t.stream[size].write_units / n for t in ts])
        line(f"    {size:>3}: invocations / job", [t.stream[size].invocations / n for t in ts])
    phases = sorted({k for t in ts for k in t.by_phase})
    print("  API calls per job by phase")
    for phase in phases:
        line(f"    {phase}", [t.by_phase[phase] / n for t in ts])

    p = prices()
    print(f"\n  dollars per million jobs (prices.json, {p['region']}, {p['as_of']}):")
    costs = {name: cost_per_million(t, n, cpu_per_record) for name, t in tallies.items()}
    for part in ("sqs", "dynamodb", "lambda", "logs"):
        line(f"    {part}", [c[part] for c in costs.values()], ",.3f")
    line(
        "    total (without SES)",
        [sum(v for k, v in c.items() if not k.startswith("_")) for c in costs.values()],
        ",.3f",
    )
    streamed = {
        size: [stream_pages.dollars_per_million(t.stream[size], n, p) for t in ts]
        for size in stream_pages.BATCHES
    }
    for size, values in streamed.items():
        line(f"    + stream pages, {size}/batch", values, ",.3f")
    totals = [sum(v for k, v in c.items() if not k.startswith("_")) for c in costs.values()]
    with_pages = [a + b for a, b in zip(totals, streamed[10], strict=True)]
    line("    total with them, 10/batch", with_pages, ",.3f")
    print(
        f"    SES, email jobs only: ${p['ses']['per_thousand_emails'] * 1000:,.2f} per million"
        " emails on top"
    )
    first = next(iter(costs.values()))
    source = (
        "warm benchmark's CPU per record over HTTPS: worker + botocore + HTTP stack"
        if cpu_per_record
        else "no CPU figure (warm skipped)"
    )
    print(
        f"    Lambda duration model: {first['_duration_ms']:.0f} ms per batch of {BATCH_SIZE} "
        f"({source}: {first['_cpu_ms']:.1f} ms at the 256 MB CPU share, plus "
        f"{p['assumptions']['dynamodb_write_latency_ms']} ms per DynamoDB call)"
    )

    results = []
    for name, t in tallies.items():
        results.append(
            Result(
                "requests",
                f"{name}: DynamoDB write requests/job",
                t.item_writes / n,
                TARGET_DDB_WRITES,
            )
        )
        results.append(
            Result(
                "requests",
                f"{name}: write units/job (table+GSIs)",
                t.write_units / n,
                TARGET_WRITE_UNITS,
            )
        )
    many = tallies["enqueue_many"]
    for size in stream_pages.BATCHES:
        results.append(
            Result(
                "requests",
                f"enqueue_many: stream page WU/job ({size} INSERTs a batch)",
                many.stream[size].write_units / n,
                None,
            )
        )
    results.append(
        Result(
            "requests",
            "enqueue_many: SQS requests/job",
            many.sqs_requests() / n,
            TARGET_SQS_REQUESTS,
        )
    )
    results.append(
        Result(
            "requests",
            "enqueue: SQS requests/job (1 send each)",
            tallies["enqueue"].sqs_requests() / n,
            None,
        )
    )
    results.append(
        Result(
            "cost",
            "enqueue_many: $ per million jobs (no SES; stream pages, 10 a batch)",
            sum(v for k, v in costs["enqueue_many"].items() if not k.startswith("_"))
            + stream_pages.dollars_per_million(many.stream[10], n, p),
            None,
            "$",
        )
    )
    return results
