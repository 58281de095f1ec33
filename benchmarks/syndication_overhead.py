"""Part 2 of the syndication benchmark (syndication.py): delivery overhead against a bare
urllib3 POST, in the same run.

(a) a bare `urllib3.PoolManager(...).request("POST", ...)` of the same body and headers a
delivery sends (signed once, outside the timing), 10 in a row, to a partner that answers 200 at
once; (b) `Worker.handle` of a batch of 10 `syndication.deliver` records to a partner of the
same server (enqueued with `enqueue_many` and received from the queue outside the timing):
admission (rate limit), claim, registry look-up (cached), signing, the POST, the outcome write,
against moto. Both partners are the local stack's `accept` partners (the same server work for
both sides), both clients keep one TLS connection for the whole run. Rounds interleaved,
alternating which goes first, `gc.collect()` before each; wall time per delivery, the median
per repetition. Inside (b), `clocks` times botocore's calls, moto's handler, signing, the
registry's look-ups and the POST.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks._common import BATCH_SIZE, esm_delete, median, quiet_logs
from benchmarks.syndication_stack import (
    LISTING,
    SECRET,
    LambdaContext,
    Rig,
    batch_event,
    partners,
    receive_batch,
    syndication_stack,
)

ROUNDS = 12  # batches of 10 deliveries per repetition (and as many bare rounds of 10 POSTs)
REPETITIONS = 3
WARMUP = 2
BODY_OF = {"type": "listing.published", "listing_id": "L-0", "version": "1", "listing": LISTING}
SAMPLES = ("bare", "worker", "post", "moto", "botocore", "sign", "reg")


@dataclass
class Clocks:
    """Wall time inside botocore calls, moto's handler, signing, registry look-ups, the POST."""

    api: float = 0.0
    moto: float = 0.0
    sign: float = 0.0
    registry: float = 0.0
    post: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    _depth: int = 0

    def reset(self) -> None:
        self.api = self.moto = self.sign = self.registry = self.post = 0.0


@contextmanager
def clocks(sender: Any) -> Iterator[Clocks]:
    """perf_counter around botocore's `_make_api_call` (the whole AWS call), moto's request
    handler (inside it), `sign` as the Sender calls it, the Registry's look-ups, and the
    Sender's pool request (the POST)."""
    from botocore.client import BaseClient
    from moto.core.botocore_stubber import BotocoreStubber

    from syndication_worker import delivery
    from syndication_worker.partners import Registry

    c = Clocks()
    clock = time.perf_counter
    saved: list[tuple[Any, str, Any]] = []

    def timed(owner: Any, name: str, slot: str, count: bool = False) -> None:
        original = getattr(owner, name)
        saved.append((owner, name, original if name in vars(owner) else None))
        if isinstance(owner, type):

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                if count:
                    c.calls[f"{self.meta.service_model.service_id}:{args[0]}"] += 1
                start = clock()
                try:
                    return original(self, *args, **kwargs)
                finally:
                    setattr(c, slot, getattr(c, slot) + clock() - start)

            setattr(owner, name, method)
        else:

            def function(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    return original(*args, **kwargs)
                finally:
                    setattr(c, slot, getattr(c, slot) + clock() - start)

            setattr(owner, name, function)

    timed(BaseClient, "_make_api_call", "api", count=True)
    timed(BotocoreStubber, "process_request", "moto")
    timed(delivery, "sign", "sign")
    timed(Registry, "load", "registry")
    timed(Registry, "secrets", "registry")
    timed(sender._pool, "request", "post")
    try:
        yield c
    finally:
        for owner, name, original in reversed(saved):
            if original is None:
                delattr(owner, name)  # an instance's own attribute: the class's method again
            else:
                setattr(owner, name, original)


@dataclass
class Overhead:
    bare: list[float]  # per repetition: median per delivery, seconds
    worker: list[float]
    post_in_worker: list[float]
    moto: list[float]
    botocore: list[float]
    sign: list[float]
    registry: list[float]
    calls_per_delivery: dict[str, float]
    connections: dict[str, int]  # TLS connections the partner saw, per side
    rounds: int

    def add(self, samples: dict[str, list[float]]) -> None:
        """One repetition's samples: the median of each."""
        self.bare.append(median(samples["bare"]))
        self.worker.append(median(samples["worker"]))
        self.post_in_worker.append(median(samples["post"]))
        self.moto.append(median(samples["moto"]))
        self.botocore.append(median(samples["botocore"]))
        self.sign.append(median(samples["sign"]))
        self.registry.append(median(samples["reg"]))


class Sides:
    """The two sides of a round: (a) 10 bare POSTs, (b) `Worker.handle` of a batch of 10."""

    def __init__(self, rig: Rig, servers: Any) -> None:
        import urllib3

        from jobkit.webhooks import sign
        from jobkit_apps.syndication import delivery_id

        self.rig = rig
        self.context = LambdaContext()
        self.pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=str(servers.ca_bundle), retries=False, maxsize=4
        )
        self.url = servers.url("bare")
        # The same bytes on the wire as a delivery: body and headers, signed once here.
        self.body = json.dumps(BODY_OF, separators=(",", ":"), sort_keys=True).encode()
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": "jobkit-syndication/1",
            "Idempotency-Key": delivery_id("L-0", "1", "timed"),
            **sign(delivery_id("L-0", "1", "timed"), self.body, [SECRET]),
        }
        self.timeout = urllib3.Timeout(total=10)
        self.counter = 0

    def bare(self) -> None:
        for _ in range(BATCH_SIZE):
            response = self.pool.request(
                "POST",
                self.url,
                body=self.body,
                headers=self.headers,
                timeout=self.timeout,
                redirect=False,
                retries=False,
            )
            assert response.status == 200, response.status

    def batch(self) -> dict[str, Any]:
        """10 deliveries in the log and the queue, received as the ESM would (untimed)."""
        from jobkit.client import EnqueueRequest
        from jobkit_apps.syndication import DELIVER, DeliverPayload, delivery_id

        requests = []
        for _ in range(BATCH_SIZE):
            self.counter += 1
            listing_id = f"T-{self.counter:05d}"
            payload = DeliverPayload(
                listing_id=listing_id,
                version="1",
                platform="timed",
                body={**BODY_OF, "listing_id": listing_id},
            )
            job_id = delivery_id(listing_id, "1", "timed")
            requests.append(EnqueueRequest(DELIVER, payload, job_id=job_id))
        assert not self.rig.client.enqueue_many(requests).failed
        messages: list[dict[str, Any]] = []
        while len(messages) < BATCH_SIZE:
            messages += receive_batch(self.rig)
        return {"messages": messages, "event": batch_event(self.rig, messages)}

    def time(self, side: str, prepared: dict[str, Any], c: Clocks) -> float:
        """Wall seconds of one side of a round, after a `gc.collect()`."""
        clock = time.perf_counter
        gc.collect()
        if side == "bare":
            start = clock()
            self.bare()
            return clock() - start
        c.reset()
        c.calls.clear()
        start = clock()
        response = self.rig.worker.handle(prepared["event"], self.context)
        spent = clock() - start
        assert not response["batchItemFailures"], response
        return spent

    def close(self) -> None:
        self.pool.clear()


def _record(
    samples: dict[str, list[float]], side: str, spent: float, c: Clocks, calls: Counter[str]
) -> None:
    samples[side].append(spent / BATCH_SIZE)
    if side == "worker":
        calls.update(c.calls)
        samples["post"].append(c.post / BATCH_SIZE)
        samples["moto"].append(c.moto / BATCH_SIZE)
        samples["botocore"].append((c.api - c.moto) / BATCH_SIZE)
        samples["sign"].append(c.sign / BATCH_SIZE)
        samples["reg"].append(c.registry / BATCH_SIZE)


def _repetition(
    sides: Sides, c: Clocks, rounds: int, warmup: int, calls: Counter[str]
) -> dict[str, list[float]]:
    """`warmup` unrecorded rounds, then `rounds`: each one (a) and one (b) batch, alternating
    which goes first. Returns the samples per delivery, by kind."""
    samples: dict[str, list[float]] = {k: [] for k in SAMPLES}
    for n in range(rounds + warmup):
        prepared = sides.batch()
        order = ["worker", "bare"] if n % 2 else ["bare", "worker"]
        for side in order:
            spent = sides.time(side, prepared, c)
            if n >= warmup:
                _record(samples, side, spent, c, calls)
        esm_delete(sides.rig.poller, sides.rig.queue_url, prepared["messages"])
    return samples


def measure_overhead(rounds: int = ROUNDS, repetitions: int = REPETITIONS) -> Overhead:
    from syndication_worker.processors import runtime

    with (
        partners({"bare": "accept", "timed": "accept"}) as servers,
        syndication_stack(servers, ["timed"], rate=10_000, burst=100_000) as rig,
    ):
        sides = Sides(rig, servers)
        out = Overhead([], [], [], [], [], [], [], {}, {}, rounds)
        calls: Counter[str] = Counter()
        timed_deliveries = 0
        stats_before = servers.stats()
        with quiet_logs(), clocks(runtime().sender) as c:
            for rep in range(repetitions):
                samples = _repetition(sides, c, rounds, WARMUP if rep == 0 else 0, calls)
                timed_deliveries += len(samples["worker"]) * BATCH_SIZE
                out.add(samples)
        stats_after = servers.stats()
        sides.close()
    # the worker's calls in the timed rounds (enqueue/receive/delete above are the harness's,
    # made outside `handle`, and counted only while handle runs)
    out.calls_per_delivery = {op: k / timed_deliveries for op, k in sorted(calls.items())}
    out.connections = {
        side: stats_after[name]["connections"] - stats_before[name]["connections"]
        for side, name in (("bare", "bare"), ("worker", "timed"))
    }
    return out
