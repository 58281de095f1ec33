"""AWS requests, capacity units and dollars per job on the happy path.

N jobs are enqueued (with `enqueue_many`, with `enqueue`, and with `enqueue_many` given
caller-chosen ids), then a poller does what Lambda's event source mapping does: ReceiveMessage
10 at a time, hand the batch to `Worker.handle`, DeleteMessageBatch the records that are not in
`batchItemFailures`. Every request is counted with botocore's `before-call.*.*` event on the
clients in `jobkit.aws._clients` and on the poller's own client. DynamoDB capacity is modelled
from item images read around each write by a separate, uncounted client (see capacity.py).
The hooks run on the thread that makes the call (`enqueue_many` writes from 16 threads), so
what one call carries from its parameters to its answer is kept per thread, and the tally is
updated under a lock.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks import capacity
from benchmarks._common import (
    BATCH_SIZE,
    CountingSink,
    Result,
    bench_job_type,
    moto_stack,
    noop_processor,
    payload,
    prices,
    queue_arn,
    quiet_logs,
    sqs_record,
    template,
)

N_JOBS = 200
TARGET_DDB_WRITES = 3.0
TARGET_WRITE_UNITS = 4.0
TARGET_SQS_REQUESTS = 0.35

_DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
_DDB_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}


@dataclass
class Tally:
    """What one scenario cost, in requests and modelled units."""

    calls: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> API calls
    by_phase: Counter[str] = field(default_factory=Counter)  # "phase service" -> API calls
    # DynamoDB write requests in the billing sense: batch items count one each, and so does a
    # write whose condition failed (billed); an unprocessed batch item does not
    item_writes: int = 0
    failed_conditions: int = 0  # of those, writes whose condition failed
    table_wu: int = 0
    index_wu: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    sqs_billed: int = 0  # SQS requests counted in 64 KB chunks
    invocations: int = 0
    records: int = 0
    log: CountingSink = field(default_factory=CountingSink)
    ddb_calls_in_worker: int = 0

    def sqs_requests(self) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith("sqs:"))

    def ddb_requests(self) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith("dynamodb:"))

    @property
    def write_units(self) -> int:
        return self.table_wu + sum(self.index_wu.values())


_Write = tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]


class _CallState(threading.local):
    """What one call carries from `before-parameter-build` to `after-call`, per thread."""

    def __init__(self) -> None:
        self.before: list[_Write] = []  # (key, item before, item a PutItem writes) per item
        self.keys_read = 0  # keys asked for by a GetItem / BatchGetItem


class Meter:
    """botocore event hooks that count requests and model capacity, client by client.

    Thread-safe: `before-parameter-build` and `after-call` of one call run on the calling
    thread, so the item images read before a write (and the keys of a read) wait for the
    answer in thread-local state; every change to the tally is made under a lock. `phase` and
    `tally` are set by the driving thread between calls.
    """

    def __init__(self, table: str, key_names: list[str], indexes: list[capacity.Index]) -> None:
        import boto3

        self.tally = Tally()
        self.phase = "setup"
        self.table = table
        self.key_names = key_names
        self.indexes = indexes
        self._reader = boto3.client("dynamodb")  # uncounted: never hooked
        self._lock = threading.Lock()  # around every change to the tally
        self._call = _CallState()  # one call's state, from its parameters to its answer
        self._hooked: set[int] = set()

    def hook(self, client: Any) -> None:
        if id(client) in self._hooked:
            return
        self._hooked.add(id(client))
        events = client.meta.events
        events.register("before-parameter-build.*.*", self._params)
        events.register("before-call.*.*", self._count)
        events.register("after-call.*.*", self._after)
        events.register("after-call-error.*.*", self._forget)

    # -- hooks -----------------------------------------------------------------------------

    def _count(self, model: Any, params: Any, event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        with self._lock:
            self.tally.calls[f"{service}:{model.name}"] += 1
            self.tally.by_phase[f"{self.phase} {service}"] += 1
            if service == "dynamodb" and self.phase == "worker":
                self.tally.ddb_calls_in_worker += 1

    def _params(self, params: dict[str, Any], model: Any, event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        if service == "dynamodb" and model.name in _DDB_WRITES:
            writes = self._write_items(model.name, params)
            self._call.before = [(k, self._get(k), new) for k, new in writes]
        elif service == "dynamodb" and model.name in ("GetItem", "BatchGetItem"):
            # A key read that finds nothing is still billed as one read of a small item.
            requests = (
                params.get("RequestItems", {}).values() if "RequestItems" in params else [params]
            )
            self._call.keys_read = sum(len(r.get("Keys", [r.get("Key")])) for r in requests)
        elif service == "sqs" and model.name in ("SendMessage", "SendMessageBatch"):
            entries = params.get("Entries") or [params]
            size = sum(_message_size(e) for e in entries)
            billed = max(1, math.ceil(size / prices()["sqs"]["request_chunk_bytes"]))
            with self._lock:
                self.tally.sqs_billed += billed
        elif service == "sqs" and model.name != "ReceiveMessage":
            with self._lock:
                self.tally.sqs_billed += 1

    def _after(self, model: Any, parsed: dict[str, Any], event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        if service == "dynamodb" and model.name in _DDB_WRITES:
            self._after_write(model.name, parsed)
        elif service == "dynamodb" and model.name in _DDB_READS:
            items = parsed.get("Items") or []
            if "Item" in parsed:
                items = [parsed["Item"]]
            for found in parsed.get("Responses", {}).values():
                items = [*items, *found]
            units = sum(capacity.read_units(item, consistent=True) for item in items)
            unprocessed = sum(
                len(u.get("Keys", [])) for u in parsed.get("UnprocessedKeys", {}).values()
            )
            if "Error" not in parsed:
                missing = max(self._call.keys_read - unprocessed - len(items), 0)
                units += missing * capacity.read_units(None, consistent=True)
            self._call.keys_read = 0
            with self._lock:
                self.tally.read_units += units
        elif service == "sqs" and model.name == "ReceiveMessage":
            size = sum(_message_size(m) for m in parsed.get("Messages", []))
            billed = max(1, math.ceil(size / prices()["sqs"]["request_chunk_bytes"]))
            with self._lock:
                self.tally.sqs_billed += billed

    def _after_write(self, operation: str, parsed: dict[str, Any]) -> None:
        """Price a write from the images around it.

        DynamoDB bills a write whose condition fails too: the larger of the item as it is and
        the item the request would have written, with no index change. For a `PutItem` that
        is exact; for an `UpdateItem` the would-be item is not known here and the item as it is
        stands for it (at least 1 unit). Any other error is not billed, nor is an unprocessed
        item of a `BatchWriteItem`.
        """
        writes, self._call.before = self._call.before, []
        code = parsed.get("Error", {}).get("Code")
        if code is not None and code != "ConditionalCheckFailedException":
            return
        unprocessed = set()
        for request in parsed.get("UnprocessedItems", {}).get(self.table, []):
            item = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
            unprocessed.add(self._key_text({k: item[k] for k in self.key_names}))
        table_wu = 0
        index_wu: Counter[str] = Counter()
        billed = 0
        for key, before, new in writes:
            if self._key_text(key) in unprocessed:
                continue
            billed += 1
            if code is not None:  # the condition failed: nothing changed
                table_wu += capacity.table_write_units(before, new or before)
                continue
            after = self._get(key)
            table_wu += capacity.table_write_units(before, after)
            for index in self.indexes:
                index_wu[index.name] += index.write_units(before, after)
        with self._lock:
            self.tally.item_writes += billed
            self.tally.failed_conditions += billed if code is not None else 0
            self.tally.table_wu += table_wu
            self.tally.index_wu.update(index_wu)

    def _forget(self, **_: Any) -> None:
        """The call raised before an answer (a connection error): nothing billed is known."""
        self._call.before = []
        self._call.keys_read = 0

    # -- helpers ---------------------------------------------------------------------------

    def _write_items(
        self, operation: str, params: dict[str, Any]
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(key, the item a put writes, or None) for each item of a write on the job log."""
        if operation == "BatchWriteItem":
            writes: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
            for request in params["RequestItems"].get(self.table, []):
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    writes.append(({k: item[k] for k in self.key_names}, item))
                else:
                    writes.append((request["DeleteRequest"]["Key"], None))
            return writes
        if params.get("TableName") != self.table:
            return []
        if operation == "PutItem":
            return [({k: params["Item"][k] for k in self.key_names}, params["Item"])]
        return [(params["Key"], None)]

    @staticmethod
    def _key_text(key: dict[str, Any]) -> str:
        return repr(sorted((name, sorted(value.items())) for name, value in key.items()))

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        found = self._reader.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        return found.get("Item")  # type: ignore[no-any-return]


def _message_size(message: dict[str, Any]) -> int:
    size = len(str(message.get("MessageBody") or message.get("Body") or "").encode())
    for name, attr in (message.get("MessageAttributes") or {}).items():
        size += len(name) + len(attr.get("DataType", "")) + len(attr.get("StringValue", ""))
    return size


class FakeContext:
    """The bits of a LambdaContext the worker and Powertools read."""

    function_name = "EmailFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:EmailFunction"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str  # "many", "single", "many_ids"


SCENARIOS = [
    Scenario("enqueue_many", "many"),
    Scenario("enqueue", "single"),
    Scenario("enqueue_many + job_id", "many_ids"),
]


def drive(scenario: Scenario, n: int = N_JOBS) -> Tally:
    import boto3

    from jobkit import aws
    from jobkit.client import EnqueueRequest
    from jobkit.worker import Worker

    jt = bench_job_type()
    table = template()["Resources"]["JobsTable"]["Properties"]
    with moto_stack() as stack:
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        meter = Meter(stack.settings.table, key_names, capacity.indexes_of(table))
        aws.dynamodb()
        aws.sqs()
        poller = boto3.client("sqs")
        for client in [*aws._clients.values(), poller]:
            meter.hook(client)
        producer = stack.client
        worker = Worker("email", settings=stack.worker_settings())
        worker.processor(jt)(noop_processor)

        meter.phase = "enqueue"
        ids = [f"order-{i:05d}" if scenario.mode == "many_ids" else None for i in range(n)]
        if scenario.mode == "single":
            for i in range(n):
                producer.enqueue(jt, payload(i))
        else:
            result = producer.enqueue_many(
                [EnqueueRequest(jt, payload(i), job_id=ids[i]) for i in range(n)]
            )
            assert len(result.created) == n, result.failed

        tally = meter.tally
        done = empty = 0
        arn = queue_arn(stack.queue_url)
        context = FakeContext()
        while done < n and empty < 3:
            meter.phase = "poller"
            got = poller.receive_message(
                QueueUrl=stack.queue_url,
                MaxNumberOfMessages=BATCH_SIZE,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                empty += 1
                continue
            event = {"Records": [sqs_record(m["Body"], arn, m["ReceiptHandle"]) for m in got]}
            for record, message in zip(event["Records"], got, strict=True):
                record["messageId"] = message["MessageId"]
            meter.phase = "worker"
            with quiet_logs(tally.log):
                response = worker.handle(event, context)  # type: ignore[arg-type]
            tally.invocations += 1
            tally.records += len(got)
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            meter.phase = "poller"
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(got)
                if m["MessageId"] not in failed
            ]
            if entries:
                poller.delete_message_batch(QueueUrl=stack.queue_url, Entries=entries)
            done += len(entries)
        meter.phase = "check"
        new_clients = [c for c in aws._clients.values() if id(c) not in meter._hooked]
        assert not new_clients, "a client was created after the hooks were set: uncounted calls"
        states = Counter(
            item["state"]["S"]
            for page in meter._reader.get_paginator("scan").paginate(TableName="jobs")
            for item in page["Items"]
        )
        assert states == {"succeeded": n}, f"not every job succeeded: {dict(states)}"
    return tally


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
    line("write units / job (all)", [t.write_units / n for t in ts])
    line("read units / job", [t.read_units / n for t in ts])
    line("SQS API calls / job", [t.sqs_requests() / n for t in ts])
    line("SQS billed requests / job", [t.sqs_billed / n for t in ts])
    line("Lambda invocations / job", [t.invocations / n for t in ts])
    line("log bytes / job (stdout)", [t.log.bytes / n for t in ts], ".0f")
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
    print(
        f"    SES, email jobs only: ${p['ses']['per_thousand_emails'] * 1000:,.2f} per million"
        " emails on top"
    )
    first = next(iter(costs.values()))
    source = "measured worker + botocore CPU" if cpu_per_record else "no CPU figure (warm skipped)"
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
            "enqueue_many: $ per million jobs (no SES)",
            sum(v for k, v in costs["enqueue_many"].items() if not k.startswith("_")),
            None,
            "$",
        )
    )
    return results
