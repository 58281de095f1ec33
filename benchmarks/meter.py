"""The request meter: botocore event hooks that count every AWS request a scenario makes and
model DynamoDB capacity from item images (capacity.py), into a `Tally`.

Every request is counted with botocore's `before-call.*.*` event on the clients it hooks.
DynamoDB capacity is modelled from item images read around each write by a separate,
uncounted client. The hooks run on the thread that makes the call (`enqueue_many` writes from
16 threads), so what one call carries from its parameters to its answer is kept per thread,
and the tally is updated under a lock.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks import capacity
from benchmarks._common import CountingSink, prices

DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
DDB_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}


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
    # puts on other tables (the job pages a worker batch writes), new items: 1 unit per KB
    page_writes: int = 0
    page_wu: int = 0
    read_units: float = 0.0
    sqs_billed: int = 0  # SQS requests counted in 64 KB chunks
    invocations: int = 0
    records: int = 0
    log: CountingSink = field(default_factory=CountingSink)
    ddb_calls_in_worker: int = 0
    # the job pages fed by the stream, for this scenario's INSERTs: INSERTs per stream batch ->
    # `stream_pages.StreamCost` (measured apart, with tallies of their own)
    stream: dict[int, Any] = field(default_factory=dict)

    def sqs_requests(self) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith("sqs:"))

    def ddb_requests(self) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith("dynamodb:"))

    @property
    def write_units(self) -> int:
        return self.table_wu + sum(self.index_wu.values()) + self.page_wu


_Write = tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]


class _CallState(threading.local):
    """What one call carries from `before-parameter-build` to `after-call`, per thread."""

    def __init__(self) -> None:
        self.before: list[_Write] = []  # (key, item before, item a PutItem writes) per item
        self.keys_read = 0  # keys asked for by a GetItem / BatchGetItem
        self.consistent = True  # whether that read was consistent (or half the units)
        self.page: dict[str, Any] | None = None  # the item a PutItem on another table writes


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
        if service == "dynamodb" and model.name in DDB_WRITES:
            writes = self._write_items(model.name, params)
            self._call.before = [(k, self._get(k), new) for k, new in writes]
            if model.name == "PutItem" and params.get("TableName") != self.table:
                self._call.page = params["Item"]
        elif service == "dynamodb" and model.name in ("GetItem", "BatchGetItem"):
            # A key read that finds nothing is still billed as one read of a small item.
            requests = (
                params.get("RequestItems", {}).values() if "RequestItems" in params else [params]
            )
            self._call.keys_read = sum(len(r.get("Keys", [r.get("Key")])) for r in requests)
            self._call.consistent = all(r.get("ConsistentRead", False) for r in requests)
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
        if service == "dynamodb" and model.name in DDB_WRITES:
            self._after_write(model.name, parsed)
            self._after_page(parsed)
        elif service == "dynamodb" and model.name in DDB_READS:
            items = parsed.get("Items") or []
            if "Item" in parsed:
                items = [parsed["Item"]]
            for found in parsed.get("Responses", {}).values():
                items = [*items, *found]
            consistent = self._call.consistent or model.name in ("Query", "Scan")
            units = sum(capacity.read_units(item, consistent) for item in items)
            unprocessed = sum(
                len(u.get("Keys", [])) for u in parsed.get("UnprocessedKeys", {}).values()
            )
            if "Error" not in parsed:
                missing = max(self._call.keys_read - unprocessed - len(items), 0)
                units += missing * capacity.read_units(None, consistent)
            self._call.keys_read = 0
            self._call.consistent = True
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

    def _after_page(self, parsed: dict[str, Any]) -> None:
        """A put of a new item on another table (a job page): 1 unit per started KB."""
        page, self._call.page = self._call.page, None
        if page is None or "Error" in parsed:
            return
        with self._lock:
            self.tally.page_writes += 1
            self.tally.page_wu += capacity.table_write_units(None, page)

    def _forget(self, **_: Any) -> None:
        """The call raised before an answer (a connection error): nothing billed is known."""
        self._call.before = []
        self._call.keys_read = 0
        self._call.page = None

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
        return found.get("Item")


def _message_size(message: dict[str, Any]) -> int:
    size = len(str(message.get("MessageBody") or message.get("Body") or "").encode())
    for name, attr in (message.get("MessageAttributes") or {}).items():
        size += len(name) + len(attr.get("DataType", "")) + len(attr.get("StringValue", ""))
    return size
