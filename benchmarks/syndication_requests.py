"""Part 1 of the syndication benchmark (syndication.py): AWS requests per delivery.

N listings are published to the healthy partners, each verifying every signature, and a poller
does what Lambda's event source mapping does: ReceiveMessage of up to 10, `Worker.handle` of
the syndication worker, DeleteMessageBatch of the records not reported as failures. Every
request is counted with the request meter (meter.py) on jobkit's clients, extended to the
RateLimitsTable; the poller's receive and delete are split over the records of each batch
(0.1 each per record in a batch of 10) by job type. A first listing runs with the Powertools
Parameters cache cold and is reported on its own; the N listings after it run with it warm.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks import capacity
from benchmarks._common import CountingSink, esm_delete, failed_ids, quiet_logs, template
from benchmarks.meter import DDB_WRITES, Meter, Tally
from benchmarks.syndication_stack import (
    LISTING,
    PARTNERS,
    RATE_TABLE,
    LambdaContext,
    Rig,
    batch_event,
    in_queue,
    kind,
    partners,
    receive_batch,
    syndication_stack,
    visible,
)

N_LISTINGS = 20


@dataclass
class SynTally(Tally):
    """A Tally (requests_per_job.py) plus the rate-limit buckets, fractional ESM shares and what
    the partners saw."""

    rate_writes: int = 0
    rate_wu: int = 0
    rate_ru: float = 0.0
    shared_log: CountingSink = field(default_factory=CountingSink)
    invocations_share: float = 0.0
    esm_billed: float = 0.0

    def count(self, prefix: str) -> float:
        return sum(n for k, n in self.calls.items() if k.startswith(prefix))


class _RateCall(threading.local):
    """What one call on the RateLimitsTable carries to its answer, per thread."""

    def __init__(self) -> None:
        self.before: tuple[dict[str, Any], dict[str, Any] | None] | None = None
        self.read = False


class SyndicationMeter(Meter):
    """Meter of requests_per_job.py, plus the RateLimitsTable: its conditional writes (1 unit
    each, failed or not: items far below 1 KB, no index) and its consistent reads."""

    def __init__(self, *args: Any, rate_table: str) -> None:
        super().__init__(*args)
        self.rate_table = rate_table
        self._rate = _RateCall()

    def _rate_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        found = self._reader.get_item(TableName=self.rate_table, Key=key, ConsistentRead=True)
        return found.get("Item")

    def _params(self, params: dict[str, Any], model: Any, event_name: str, **kw: Any) -> None:
        if event_name.split(".")[1] == "dynamodb" and params.get("TableName") == self.rate_table:
            if model.name in DDB_WRITES:
                self._rate.before = (params["Key"], self._rate_item(params["Key"]))
                with self._lock:
                    self.tally.rate_writes += 1  # type: ignore[attr-defined]
            elif model.name == "GetItem":
                self._rate.read = True
            return
        super()._params(params=params, model=model, event_name=event_name, **kw)

    def _after(self, model: Any, parsed: dict[str, Any], event_name: str, **kw: Any) -> None:
        tally: SynTally = self.tally  # type: ignore[assignment]
        if self._rate.before is not None and model.name in DDB_WRITES:
            key, before = self._rate.before
            self._rate.before = None
            units = capacity.table_write_units(before, self._rate_item(key))
            with self._lock:
                tally.rate_wu += units
            return
        if self._rate.read and model.name == "GetItem":
            self._rate.read = False
            read = capacity.read_units(parsed.get("Item"), consistent=True)
            with self._lock:
                tally.rate_ru += read
            return
        super()._after(model=model, parsed=parsed, event_name=event_name, **kw)

    def _forget(self, **kw: Any) -> None:
        self._rate.before = None
        self._rate.read = False
        super()._forget(**kw)


class RoutingSink:
    """stdout of the worker: each record's log lines to its job type's tally; what is written
    between records (the batch's EMF metrics) to a shared sink, split by records later."""

    def __init__(self) -> None:
        self.target: CountingSink | None = None
        self.shared = CountingSink()

    def write(self, text: str) -> int:
        return (self.target or self.shared).write(text)

    def flush(self) -> None:
        pass


@dataclass
class Requests:
    publish: SynTally  # the publish jobs: producer, worker, ESM shares (per listing)
    deliver: SynTally  # the delivery jobs: worker, ESM shares (per delivery)
    cold: Counter[str]  # SSM / Secrets Manager calls while the cache was cold (first listing)
    listings: int
    deliveries: int
    posts: int
    verified: int
    connections: int
    item_bytes: int  # a delivery job's item in the log, after success


def _count_receive(tallies: dict[str, SynTally], kinds: Counter[str], records: int) -> None:
    """A receive of `records` messages, split over their job types (one request, < 64 KB)."""
    for name, k in kinds.items():
        share = k / records
        tally = tallies[name]
        tally.calls["sqs:ReceiveMessage"] += share  # type: ignore[assignment]
        tally.esm_billed += share
        tally.invocations_share += share
        tally.records += k


def _count_delete(tallies: dict[str, SynTally], done: list[dict[str, Any]]) -> None:
    """A DeleteMessageBatch of the `done` messages, split over their job types."""
    for name, k in Counter(kind(m["Body"]) for m in done).items():
        share = k / len(done)
        tallies[name].calls["sqs:DeleteMessageBatch"] += share  # type: ignore[assignment]
        tallies[name].esm_billed += share


@contextmanager
def _routed(
    worker: Any, meter: SyndicationMeter, tallies: dict[str, SynTally], sink: RoutingSink
) -> Iterator[None]:
    """Each record's requests and log lines to its job type's tally: the worker's `_record`
    wrapped for the time being."""
    original = worker._record

    def record(record: Any, lambda_context: Any = None) -> None:
        name = kind(record.body)
        meter.tally = tallies[name]
        sink.target = tallies[name].log
        try:
            original(record, lambda_context)
        finally:
            sink.target = None

    worker._record = record
    try:
        yield
    finally:
        del worker._record  # the class's method again


def _drain(rig: Rig, meter: SyndicationMeter, tallies: dict[str, SynTally]) -> None:
    """What the ESM does while messages are visible; receives that would be empty are not made
    (an idle ESM's long polls are a cost per queue, not per job)."""
    sink = RoutingSink()
    context = LambdaContext()
    with _routed(rig.worker, meter, tallies, sink):
        while visible(rig):
            messages = receive_batch(rig)
            kinds = Counter(kind(m["Body"]) for m in messages)
            _count_receive(tallies, kinds, len(messages))
            meter.phase = "worker"
            before = sink.shared.bytes
            with quiet_logs(sink):  # type: ignore[arg-type]
                response = rig.worker.handle(batch_event(rig, messages), context)
            shared = sink.shared.bytes - before
            for name, k in kinds.items():
                tallies[name].shared_log.bytes += round(shared * k / len(messages))
            done = esm_delete(rig.poller, rig.queue_url, messages, failed_ids(response))
            if done:
                _count_delete(tallies, done)


def _publish(rig: Rig, meter: SyndicationMeter, listings: range) -> dict[str, SynTally]:
    """Publish these listings to every partner and drain the queue, counted by job type."""
    from jobkit_apps.syndication import publish_listing

    tallies = {"publish": SynTally(), "deliver": SynTally()}
    meter.tally = tallies["publish"]
    meter.phase = "producer"
    for i in listings:
        listing = {**LISTING, "url": f"https://homes.example.com/l/{i:03d}"}
        publish_listing(f"L-{i:03d}", 1, listing, client=rig.client)
    _drain(rig, meter, tallies)
    return tallies


def _check_succeeded(reader: Any, n: int) -> dict[str, Any]:
    """Every publish and delivery job of the n + 1 listings succeeded (uncounted). Returns the
    last listing's first delivery, as the log keeps it."""
    from jobkit_apps.syndication import delivery_id, publish_id

    states: Counter[str] = Counter()
    for i in range(n + 1):
        ids = [publish_id(f"L-{i:03d}", 1)]
        ids += [delivery_id(f"L-{i:03d}", 1, p) for p in PARTNERS]
        for job_id in ids:
            item = reader.get_item(TableName="jobs", Key={"pk": {"S": job_id}})["Item"]
            states[item["state"]["S"]] += 1
    assert states == {"succeeded": (n + 1) * (1 + len(PARTNERS))}, states
    key = {"pk": {"S": delivery_id(f"L-{n:03d}", 1, PARTNERS[0])}}
    return reader.get_item(TableName="jobs", Key=key)["Item"]  # type: ignore[no-any-return]


def _cold_calls(cold: dict[str, SynTally]) -> Counter[str]:
    """The SSM and Secrets Manager calls of the listing published with the caches cold."""
    return Counter(
        {
            op: int(t.calls[op])
            for t in cold.values()
            for op in t.calls
            if op.startswith(("ssm:", "secrets-manager:"))
        }
    )


def measure_requests(n: int = N_LISTINGS) -> Requests:
    from jobkit import aws

    table = template()["Resources"]["JobsTable"]["Properties"]
    with (
        partners(dict.fromkeys(PARTNERS, "healthy")) as servers,
        syndication_stack(servers, list(PARTNERS), rate=50, burst=50) as rig,
    ):
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        meter = SyndicationMeter(
            rig.settings.table, key_names, capacity.indexes_of(table), rate_table=RATE_TABLE
        )
        clients = dict(aws._clients)
        for c in clients.values():
            meter.hook(c)
        cold = _publish(rig, meter, range(1))  # the first listing: Powertools' caches are empty
        warm = _publish(rig, meter, range(1, n + 1))
        # checks (uncounted)
        assert dict(aws._clients) == clients, "jobkit made a client after the hooks were set"
        assert in_queue(rig, rig.queue_url) == 0 and in_queue(rig, rig.dlq_url) == 0
        last = _check_succeeded(meter._reader, n)
        seen = servers.stats()
    deliveries = n * len(PARTNERS)
    posts = sum(seen[p]["posts"] for p in PARTNERS)
    assert posts == deliveries + len(PARTNERS), f"{posts} POSTs for {deliveries} deliveries"
    return Requests(
        warm["publish"],
        warm["deliver"],
        _cold_calls(cold),
        n,
        deliveries,
        posts,
        sum(seen[p]["verified"] for p in PARTNERS),
        sum(seen[p]["connections"] for p in PARTNERS),
        capacity.item_size(last),
    )
