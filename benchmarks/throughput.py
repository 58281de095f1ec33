"""Throughput: jobs per second of the local stack, and the sizing model for Lambda.

Part 1, measured. `jobkit_tools.local.LocalStack` deploys template.yaml into moto's server (a
child process) and runs each function as local processes fed by its event source mapping
(BatchSize, batching window and MaximumConcurrency as deployed). After a warm-up that starts
the nightly function's containers, N `nightly.refresh_account` jobs (the nightly function runs
them; its processor does no work) are enqueued with `enqueue_many`, and the clock runs from the
first enqueue until the mapping has deleted all N records, each after its job succeeded; the
job log is then read to check that all N are `succeeded`. Each invocation's duration is taken
from the local runner (`Container.invoke`, patched here) for the container time per record.

Everything runs on this machine: moto answering every call, the function processes, the
pollers and the producer share its 2 cores (with whatever else runs). The jobs per second are
this machine's, not Lambda's; the run shows that the mapping keeps MaximumConcurrency batches
in flight, which is what the model assumes.

Part 2, modelled (sizing.py): jobs per second and drain times on Lambda from the warm
benchmark's CPU per record (over HTTPS) and the assumed round trips, and the seeds' targets
checked against template.yaml's defaults.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Result, median, prices, setup_process
from benchmarks.sizing import Model, check_defaults, print_table

N_JOBS = 600
QUICK_JOBS = 150
TIMEOUT_S = 150.0
FUNCTION = "NightlyFunction"


@dataclass
class Throughput:
    jobs: int
    seconds: float  # first enqueue to the last record deleted
    enqueue_seconds: float
    concurrency: int
    batch_size: int
    window: float
    invocations: list[tuple[float, int]]  # (seconds, records) of each measured invocation

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def container_per_record(self) -> float:
        return sum(d for d, _ in self.invocations) / max(1, sum(n for _, n in self.invocations))

    @property
    def mean_batch(self) -> float:
        return sum(n for _, n in self.invocations) / max(1, len(self.invocations))

    @property
    def mean_batch_time(self) -> float:
        return sum(d for d, _ in self.invocations) / max(1, len(self.invocations))


@contextmanager
def _producer(stack: Any) -> Iterator[Any]:
    """A jobkit client configured as a producer process of this stack is: by environment."""
    from jobkit import aws
    from jobkit.client import Jobkit
    from jobkit.settings import Settings, get_settings

    saved = dict(os.environ)
    os.environ.update(stack.producer_env())
    aws.reset_clients()
    get_settings.cache_clear()
    try:
        yield Jobkit(Settings())
    finally:
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
        get_settings.cache_clear()


@contextmanager
def _invocations(function: str) -> Iterator[list[tuple[float, int]]]:
    """(duration, records) of every invocation of `function` the local runner makes."""
    from jobkit_tools.local.esm_container import Container

    seen: list[tuple[float, int]] = []
    invoke = Container.invoke

    def timed(self: Any, event: dict[str, Any], timeout: float) -> Any:
        outcome = invoke(self, event, timeout)
        if self.spec.logical_id == function and outcome.status == "ok":
            seen.append((outcome.duration, len(event.get("Records", []))))
        return outcome

    Container.invoke = timed  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Container.invoke = invoke  # type: ignore[method-assign]


def _enqueue(producer: Any, run: str, first: int, n: int) -> None:
    from jobkit.client import EnqueueRequest
    from jobkit_apps.nightly import REFRESH_ACCOUNT, RefreshAccountPayload

    requests = [
        EnqueueRequest(
            REFRESH_ACCOUNT,
            RefreshAccountPayload(account_id=f"acct-{i:07d}", run=run),
            job_id=f"{run}/acct-{i:07d}",
        )
        for i in range(first, first + n)
    ]
    result = producer.enqueue_many(requests)
    assert len(result.created) == n, result.failed


def _wait_deleted(poller: Any, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while poller.stats.deleted < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{poller.stats.deleted} of {target} records done in {timeout} s")
        time.sleep(0.02)
    return time.monotonic()


def _succeeded(stack: Any, prefix: str) -> int:
    from jobkit_tools.local.stack import client

    ddb = client("dynamodb", stack.endpoint_url)
    pages = ddb.get_paginator("scan").paginate(
        TableName=stack.deployment.outputs["JobsTableName"],
        FilterExpression="begins_with(pk, :run) AND #state = :done",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={":run": {"S": prefix}, ":done": {"S": "succeeded"}},
        Select="COUNT",
    )
    return sum(page["Count"] for page in pages)


def measure(n: int = N_JOBS) -> Throughput:
    setup_process()
    from jobkit_tools.local import LocalStack

    with (
        tempfile.TemporaryDirectory(prefix="jobkit-throughput-") as folder,
        _invocations(FUNCTION) as invocations,
        LocalStack(ROOT / "template.yaml", log_dir=Path(folder)) as stack,
        _producer(stack) as producer,
    ):
        (poller,) = [p for p in stack.pollers if p.function.logical_id == FUNCTION]
        run = f"bench-{uuid.uuid4().hex[:8]}"
        warmup = poller.concurrency * poller.mapping.batch_size
        _enqueue(producer, run, 0, warmup)  # starts the containers (cold starts)
        _wait_deleted(poller, warmup, TIMEOUT_S)
        invocations.clear()
        base = poller.stats.deleted
        started = time.monotonic()
        _enqueue(producer, run, warmup, n)
        enqueued = time.monotonic()
        ended = _wait_deleted(poller, base + n, TIMEOUT_S)
        assert poller.stats.returned == 0, f"{poller.stats.returned} records came back"
        done = _succeeded(stack, f"{run}/")
        assert done == warmup + n, f"{done} of {warmup + n} jobs succeeded"
        return Throughput(
            n,
            ended - started,
            enqueued - started,
            poller.concurrency,
            poller.mapping.batch_size,
            poller.mapping.batching_window,
            list(invocations),
        )


def _inputs(warm: Any) -> tuple[tuple[float, float, float], str]:
    """(CPU per record, calls per record, enqueue CPU per job) from this run's warm benchmark,
    or from the warm run recorded in prices.json."""
    if warm is not None:
        enqueue = median(warm.enqueue_cpu)
        return (warm.lambda_cpu, warm.calls_per_record, enqueue), "this run's warm benchmark"
    ref = prices()["sizing"]
    figures = (
        ref["cpu_per_record_ms"] / 1000,
        ref["calls_per_record"],
        ref["enqueue_cpu_per_job_ms"] / 1000,
    )
    return figures, "prices.json 'sizing' (the recorded warm run)"


def _report_local(t: Throughput) -> None:
    c, b, n = t.concurrency, t.batch_size, t.jobs
    print(f"  {FUNCTION} as deployed: MaximumConcurrency {c}, BatchSize {b}, window {t.window:g} s")
    print(
        f"  {n} nightly.refresh_account jobs (no work) enqueued in {t.enqueue_seconds:.1f} s; "
        f"all succeeded {t.seconds:.1f} s after the first: {t.jobs_per_s:.1f} jobs/s"
    )
    predicted = c * t.mean_batch / t.mean_batch_time
    print(
        f"  {len(t.invocations)} invocations, {t.mean_batch:.1f} records each, "
        f"{t.mean_batch_time * 1000:.0f} ms each: {t.container_per_record * 1000:.1f} ms of "
        f"container time per record; slot time per record (MaxConc x wall / jobs) "
        f"{c * t.seconds / n * 1000:.1f} ms"
    )
    print(
        f"  model check: MaxConc x batch / batch time = {predicted:.1f} jobs/s against "
        f"{t.jobs_per_s:.1f} measured ({t.jobs_per_s / predicted:.0%} of {c} slots busy)"
    )
    print("  (this machine: 2 cores for moto, the containers, pollers and producer; not Lambda)")


def run(warm: Any = None, quick: bool = False) -> list[Result]:
    """`warm`: this run's `warm.WarmFigures`, if the warm benchmark ran."""
    n = QUICK_JOBS if quick else N_JOBS
    print(f"\n== 8. Throughput: the local stack ({FUNCTION}, {n} jobs), and the sizing model ==")
    t = measure(n)
    _report_local(t)
    (cpu, calls, enqueue), source = _inputs(warm)
    model = Model.from_prices(cpu, calls)
    print(f"  sizing model for Lambda at 256 MB, CPU per record from {source}:")
    print_table(model)
    checks = check_defaults(model, enqueue)
    c, b = t.concurrency, t.batch_size
    return [
        Result(
            "throughput",
            f"local stack jobs/s ({FUNCTION}, MaxConc {c}, batch {b})",
            t.jobs_per_s,
            None,
        ),
        Result(
            "throughput",
            "local stack container time per record, ms",
            t.container_per_record * 1000,
            None,
        ),
        Result(
            "throughput",
            "model: seeds' nightly (30,000 x 1 s) at defaults, h",
            checks["nightly_s"] / 3600,
            2.0,
            "h",
        ),
        Result(
            "throughput",
            "model: nightly fan-out of 30,000 at 256 MB / its 300 s timeout",
            checks["fan_out_share"],
            1.0,
            "x",
        ),
        Result(
            "throughput",
            "model: nightly MaxConc for 2 h at 10x (300,000)",
            checks["need_10x"],
            None,
        ),
    ]
