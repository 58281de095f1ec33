"""Warm CPU per record: jobkit's Worker against a hand-written worker with the same duties.

Batches of 10 SQS records (Lambda event shape) of a `bench.noop` job go to jobkit's `Worker`
and to `HandWrittenWorker` (warm_workers.py: the happy path's duties by hand, on the same
boto3 client and the same Powertools logger and metrics, as many INFO lines per job as jobkit
logged in the same run), each against two DynamoDBs, to `MinimalWorker` (fewer duties:
context), and to a bare Powertools BatchProcessor that only `json.loads` (context). Six sides
per round, in a rotating order, each on a fresh batch of queued jobs written straight into its
log:

- `jobkit`, `hand`: moto in-process (`mock_aws`). Measured: CPU per record less the CPU inside
  moto's request handler, (c): the worker plus botocore's client side, what a Lambda CPU runs
  except the HTTP stack. **The target is jobkit / hand-written on (c).** Also (b): CPU less
  everything inside botocore's `_make_api_call`, the worker's own code.
- `jobkit@https`, `hand@https`: the same workers against moto behind TLS in a child process
  (http_stack.py: urllib3, TLS and the socket run as they do on Lambda). Measured: all of this
  process's CPU per record, and the part inside botocore's send path, per call. jobkit's
  figure here is the CPU input of the Lambda duration model (requests_per_job.py,
  time_requests.py, sizing.py).
- `minimal`: moto in-process, (c) and (b) as above.
- `bare`: the BatchProcessor on jobkit's batch.

Requests are signed by botocore's Python SigV4 signer, as on Lambda (no awscrt in its runtime).
CPU is `time.process_time` around the handler. A run is `rounds` rounds; its figures are the
medians of its samples; each figure is printed as min / median / max over the runs.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks._common import (
    BATCH_SIZE,
    CountingSink,
    bench_job_type,
    deployed,
    median,
    moto_stack,
    noop_processor,
    quiet_logs,
)
from benchmarks.warm_workers import (
    HandWrittenWorker,
    MinimalWorker,
    bare_handler,
    baseline_logger,
    counting_info,
    redirected,
    seed_batch,
)

TARGET_RATIO = 1.1
RUNS = 3
ROUNDS = 30  # rounds per run (each: one batch per side)
WARMUP = 3
SIDES = ("jobkit", "hand", "minimal", "bare", "jobkit@https", "hand@https")


@dataclass
class Run:
    """Per-record medians of one run: measure -> side -> seconds (calls: a count)."""

    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    info_lines: dict[str, float] = field(default_factory=dict)  # worker -> INFO lines per job
    log_bytes: dict[str, float] = field(default_factory=dict)  # worker -> bytes per job

    def get(self, measure: str, side: str) -> float:
        return self.figures[measure][side]

    def https_less_send(self, side: str) -> float:
        """CPU per record over HTTPS less the send path: the worker and botocore."""
        https = f"{side}@https"
        return self.get("total", https) - self.get("send", https) * self.get("calls", https)


@dataclass
class WarmFigures:
    runs: list[Run]
    connections: int = 0  # TLS connections opened over HTTPS (warm-up included)
    https_calls: int = 0  # AWS calls made over HTTPS
    enqueue_cpu: list[float] = field(default_factory=list)  # per job, enqueue_many over HTTPS

    def each(self, fn: Callable[[Run], float]) -> list[float]:
        return [fn(r) for r in self.runs]

    @property
    def lambda_cpu(self) -> float:
        """jobkit's CPU per record over HTTPS (worker + botocore + HTTP stack), on this
        machine's core: the Lambda duration model's CPU input."""
        return median(self.each(lambda r: r.get("total", "jobkit@https")))

    @property
    def calls_per_record(self) -> float:
        return median(self.each(lambda r: r.get("calls", "jobkit@https")))


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


class Sides:
    """The two stacks (moto in-process, moto over HTTPS), the handlers of the six sides, the
    log sinks and INFO counters of the two workers."""

    def __init__(self, stacks: dict[str, Any], clients: dict[str, dict[str, Any]]) -> None:
        self.stacks = stacks
        self.clients = clients
        self.job_type = bench_job_type()
        self.lines_per_job = 0
        self.handle: dict[str, Callable[[dict[str, Any], Any], Any]] = {"bare": bare_handler()}
        for mode, stack in stacks.items():
            suffix = "" if mode == "moto" else "@https"
            self.handle["jobkit" + suffix] = self._jobkit(stack)
            self.handle["hand" + suffix] = HandWrittenWorker(
                stack.settings.table, self.job_type, noop_processor, lambda: self.lines_per_job
            ).handle
        self.handle["minimal"] = MinimalWorker(
            stacks["moto"].settings.table, self.job_type, noop_processor, lambda: 1
        ).handle
        self.sinks = {"jobkit": CountingSink(), "hand": CountingSink()}
        self.info: dict[str, Any] = {}

    def _jobkit(self, stack: Any) -> Callable[[dict[str, Any], Any], Any]:
        from jobkit.worker import Worker

        worker = Worker("email", settings=deployed(stack.worker_settings()))
        worker.processor(self.job_type)(noop_processor)
        return worker.handle

    def enter(self, exits: ExitStack) -> None:
        from jobkit.observability import logger

        exits.enter_context(quiet_logs(self.sinks["jobkit"]))
        exits.enter_context(redirected(baseline_logger(), self.sinks["hand"]))
        exits.enter_context(redirected(baseline_logger("minimal"), CountingSink()))
        self.info["jobkit"] = exits.enter_context(counting_info(logger))
        self.info["hand"] = exits.enter_context(counting_info(baseline_logger()))

    @contextmanager
    def mode(self, side: str) -> Iterator[None]:
        """jobkit's clients, and moto's in-process stub on or off, for this side's stack."""
        from moto.core.models import botocore_stubber

        from jobkit import aws

        mode = "https" if side.endswith("@https") else "moto"
        aws._clients.clear()
        aws._clients.update(self.clients[mode])
        botocore_stubber.enabled = mode == "moto"
        try:
            yield
        finally:
            self.clients[mode].update(aws._clients)
            botocore_stubber.enabled = True

    def event(self, side: str, tag: str) -> dict[str, Any]:
        with self.mode(side):
            stack = self.stacks["https" if side.endswith("@https") else "moto"]
            return seed_batch(stack.settings.table, self.job_type, f"{tag}-{side}", stack.queue_url)

    def calibrate(self) -> None:
        """Count the INFO lines jobkit writes per job now (the baseline writes as many)."""
        before = self.info["jobkit"].count
        for side in ("jobkit", "jobkit@https"):
            event = self.event(side, "calibrate")
            with self.mode(side):
                self.handle[side](event, None)
        self.lines_per_job = round((self.info["jobkit"].count - before) / (2 * BATCH_SIZE))

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        return (
            {worker: c.count for worker, c in self.info.items()},
            {worker: s.bytes for worker, s in self.sinks.items()},
        )


class Timers:
    """botocore's `_make_api_call` and moto's handler (timers.py), the send path
    (http_stack.py), reset before each sample."""

    def __init__(self, exits: ExitStack) -> None:
        from benchmarks.http_stack import send_timer
        from benchmarks.timers import timed_aws_calls

        self.calls = exits.enter_context(timed_aws_calls())
        self.send = exits.enter_context(send_timer())

    def reset(self) -> None:
        self.calls.reset()
        self.send.reset()

    def record(self, samples: dict[str, dict[str, list[float]]], side: str, cpu: float) -> None:
        per = BATCH_SIZE
        samples["own"][side].append((cpu - self.calls.api) / per)
        samples["calls"][side].append(self.calls.calls / per)
        if side.endswith("@https"):
            samples["total"][side].append(cpu / per)
            samples["send"][side].append(self.send.seconds / max(self.send.sends, 1))
        else:
            samples["client"][side].append((cpu - self.calls.moto) / per)


def _sample(handler: Callable[[dict[str, Any], Any], Any], event: dict[str, Any]) -> float:
    gc.collect()  # cheap: what existed before the round is frozen (gc.freeze)
    start = time.process_time()
    response = handler(event, None)
    spent = time.process_time() - start
    assert not response["batchItemFailures"], response
    return spent


def _run(sides: Sides, timers: Timers, rounds: int, tag: str) -> Run:
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    start = sides.counters()
    for n in range(WARMUP + rounds):
        if n == WARMUP:
            start = sides.counters()
        events = {side: sides.event(side, f"{tag}-{n}") for side in SIDES if side != "bare"}
        events["bare"] = events["jobkit"]
        gc.freeze()
        k = n % len(SIDES)
        for side in SIDES[k:] + SIDES[:k]:
            with sides.mode(side):
                timers.reset()
                spent = _sample(sides.handle[side], events[side])
            if n >= WARMUP:
                timers.record(samples, side, spent)
    run = Run({m: {s: median(v) for s, v in by_side.items()} for m, by_side in samples.items()})
    lines, sizes = sides.counters()
    jobs = 2 * rounds * BATCH_SIZE  # each worker, both stacks
    run.info_lines = {w: (lines[w] - start[0][w]) / jobs for w in lines}
    run.log_bytes = {w: (sizes[w] - start[1][w]) / jobs for w in sizes}
    return run


@contextmanager
def _lambda_signing() -> Iterator[None]:
    """Sign with botocore's own SigV4 (Python), as on Lambda: its Python 3.13 runtime has no
    awscrt, which botocore in this virtualenv would sign with (`boto3[crt]`)."""
    import botocore.auth

    maps = botocore.auth.AUTH_TYPE_MAPS
    saved = {name: maps[name] for name in ("v4", "v4-query")}
    maps["v4"] = botocore.auth.SigV4Auth
    maps["v4-query"] = botocore.auth.SigV4QueryAuth
    try:
        yield
    finally:
        maps.update(saved)


@contextmanager
def _stacks() -> Iterator[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """moto over HTTPS and moto in-process, each with the table and queues of the tests, and
    jobkit's clients for each."""
    from tests.conftest import create_stack_resources

    from benchmarks.http_stack import pointed_at, tls_moto_server
    from jobkit import aws

    with tls_moto_server() as (url, bundle):
        with pointed_at(url, bundle):
            aws.reset_clients()
            https = create_stack_resources()
            aws.dynamodb()
            aws.sqs()
            https_clients = dict(aws._clients)
        with moto_stack() as stack:
            aws.dynamodb()
            aws.sqs()
            clients = {"moto": dict(aws._clients), "https": https_clients}
            try:
                yield {"moto": stack, "https": https}, clients
            finally:
                gc.unfreeze()


def measure(runs: int = RUNS, rounds: int = ROUNDS) -> WarmFigures:
    figures = WarmFigures([])
    with _lambda_signing(), _stacks() as (stacks, clients), ExitStack() as exits:
        sides = Sides(stacks, clients)
        sides.enter(exits)
        timers = Timers(exits)
        sides.calibrate()
        for r in range(runs):
            figures.runs.append(_run(sides, timers, rounds, f"r{r}"))
        figures.connections = timers.send.connections
        figures.https_calls = timers.send.total_sends
        with sides.mode("jobkit@https"):
            figures.enqueue_cpu = _enqueue_cpu(stacks["https"], runs)
    return figures


ENQUEUE_JOBS = 300


def _enqueue_cpu(stack: Any, runs: int) -> list[float]:
    """CPU per job of `enqueue_many` with given ids over HTTPS (the nightly fan-out's per-child
    work: a conditional PutItem per job from 16 threads, a SendMessageBatch per 10), all
    threads of this process counted; one figure per run."""
    from benchmarks._common import payload
    from jobkit.client import EnqueueRequest

    producer = stack.client
    jt = bench_job_type()
    out = []
    for r in range(runs + 1):
        requests = [
            EnqueueRequest(jt, payload(i), job_id=f"fan-out-{r}/{i}") for i in range(ENQUEUE_JOBS)
        ]
        gc.collect()
        start = time.process_time()
        result = producer.enqueue_many(requests)
        spent = time.process_time() - start
        assert len(result.created) == ENQUEUE_JOBS, result.failed
        if r:  # the first is a warm-up (the pool's connections, its TLS handshakes)
            out.append(spent / ENQUEUE_JOBS)
    return out
