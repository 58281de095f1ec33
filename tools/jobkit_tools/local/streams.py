"""The DynamoDB stream event source mapping, run locally: a poller per mapping (a table's stream
feeding a function), as Lambda polls a stream.

Hand-written, like esm.py: moto keeps a table's stream records and answers GetShardIterator and
GetRecords, but would run the function (in Docker) itself (switched off in motoserver.py), and
no library polls a stream the way Lambda does. This one keeps the mapping's contract:

- `StartingPosition`: LATEST takes each shard's iterator when the poller starts (records
  written before are never read); TRIM_HORIZON reads the shard from its start.
- `FilterCriteria`: a record that matches none of the filters is dropped before any
  invocation (EventBridge's pattern rules, moto's own matcher), as Lambda drops it.
- `BatchSize` and `MaximumBatchingWindowInSeconds`: records are gathered (GetRecords about
  every second) until the batch is full or the window, opened by its first record, closes.
- One batch at a time per shard, in order, in a container of the function (`esm_container`)
  bounded by its `Timeout`.
- A failed invocation (error, timeout, crash) is retried: with `BisectBatchOnFunctionError`
  the batch is split in two first, each half retried on its own, until
  `MaximumRetryAttempts` (-1: for ever); then the batch's description goes to the
  `DestinationConfig.OnFailure` queue, as Lambda's record of it, and the poller moves on.
- The mapping's `Enabled`: a disabled mapping reads nothing until it is enabled again (from
  where it stopped).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobkit_tools.local.esm_container import (
    Container,
    ContainerError,
    LogWriter,
    MappingState,
    Outcome,
)
from jobkit_tools.local.stack import FunctionSpec, client

log = logging.getLogger("jobkit.local")

POLL_S = 1.0  # GetRecords about every second, as Lambda polls a stream's shards
RETRY_WAIT_S = 1.0  # between the attempts of a failed batch
INIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StreamMappingSpec:
    """A DynamoDB stream event source mapping as moto reports it."""

    uuid: str
    function_name: str
    stream_arn: str
    batch_size: int
    batching_window: float
    starting_position: str
    filters: tuple[str, ...]  # the patterns of FilterCriteria (none: every record)
    maximum_retry_attempts: int  # -1: until it succeeds
    bisect: bool
    on_failure: str | None  # the OnFailure destination's ARN (an SQS queue)


def read_stream_mappings(
    functions: Sequence[FunctionSpec], endpoint_url: str
) -> list[StreamMappingSpec]:
    """Every DynamoDB stream mapping of the deployed functions, enabled (moto creates a
    template's mappings disabled; CloudFormation's default is enabled)."""
    lam = client("lambda", endpoint_url)
    mappings = []
    for function in functions:
        for esm in lam.list_event_source_mappings(FunctionName=function.name)[
            "EventSourceMappings"
        ]:
            if esm["EventSourceArn"].split(":")[2] != "dynamodb":
                continue
            if esm.get("State") != "Enabled":
                lam.update_event_source_mapping(UUID=esm["UUID"], Enabled=True)
            filters = esm.get("FilterCriteria", {}).get("Filters", [])
            failure = esm.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            mappings.append(
                StreamMappingSpec(
                    uuid=esm["UUID"],
                    function_name=function.name,
                    stream_arn=esm["EventSourceArn"],
                    batch_size=int(esm.get("BatchSize", 100)),
                    batching_window=float(esm.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=str(esm.get("StartingPosition", "TRIM_HORIZON")),
                    filters=tuple(str(f["Pattern"]) for f in filters),
                    maximum_retry_attempts=int(esm.get("MaximumRetryAttempts", -1)),
                    bisect=str(esm.get("BisectBatchOnFunctionError", False)).lower() == "true",
                    on_failure=str(failure) if failure else None,
                )
            )
    return mappings


def to_lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record (as boto3 returns it) as Lambda hands it to a function: its
    creation time in epoch seconds, the stream's ARN, binary values in base64."""
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    safe: dict[str, Any] = _json_safe(
        {**record, "dynamodb": dynamodb, "eventSourceARN": stream_arn}
    )
    return safe


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def matches(patterns: Sequence[str], record: dict[str, Any]) -> bool:
    """Whether Lambda's event filtering lets `record` through: no patterns, or one matches
    (EventBridge pattern rules, as Lambda's are; moto's matcher)."""
    from moto.events.models import EventPattern

    event: Any = record  # moto types it as an EventBridge event; any JSON object is matched
    return not patterns or any(EventPattern.load(p).matches_event(event) for p in patterns)


@dataclass
class StreamStats:
    """Counters of one stream poller, for tests."""

    records: int = 0  # read from the stream
    filtered: int = 0  # of those, dropped by FilterCriteria
    batches: int = 0  # invocations
    errors: int = 0  # invocations that failed
    failed_batches: int = 0  # batches given up on (sent to the OnFailure destination)
    batch_sizes: list[int] = field(default_factory=list)


@dataclass
class _Shard:
    id: str
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    window_closes: float | None = None


class StreamPoller:
    """Lambda's poller for one DynamoDB stream mapping, and the container it invokes."""

    def __init__(
        self,
        function: FunctionSpec,
        mapping: StreamMappingSpec,
        endpoint_url: str,
        write_log: LogWriter,
        init_timeout: float = INIT_TIMEOUT_S,
    ) -> None:
        self.function = function
        self.mapping = mapping
        self.endpoint_url = endpoint_url
        self.init_timeout = max(init_timeout, INIT_TIMEOUT_S)
        self.stats = StreamStats()
        self._write_log = write_log
        self._streams = client("dynamodbstreams", endpoint_url)
        self._state = MappingState(endpoint_url, mapping.uuid, function.logical_id)
        self._shards: list[_Shard] = []
        self._container: Container | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._poll, name=f"stream-{function.logical_id}", daemon=True
        )

    def start(self) -> None:
        """Take each shard's iterator now (LATEST: what is written from now on), then poll."""
        stream = self._streams.describe_stream(StreamArn=self.mapping.stream_arn)
        position = self.mapping.starting_position
        for shard in stream["StreamDescription"]["Shards"]:
            iterator = self._streams.get_shard_iterator(
                StreamArn=self.mapping.stream_arn,
                ShardId=shard["ShardId"],
                ShardIteratorType="LATEST" if position == "LATEST" else "TRIM_HORIZON",
            )["ShardIterator"]
            self._shards.append(_Shard(shard["ShardId"], iterator))
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading; a batch in flight finishes (within the function's timeout)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(
                self.function.timeout + self.init_timeout + 2 if timeout is None else timeout
            )
        self.kill()

    def kill(self) -> None:
        """Stop at once: kill the container (the batch in flight is not retried)."""
        self._stopping.set()
        with self._lock:
            container, self._container = self._container, None
        if container is not None:
            container.kill()

    # Reading --------------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stopping.is_set():
            if self._is_enabled():
                for shard in self._shards:
                    self._read(shard)
                    self._flush(shard)
            self._stopping.wait(POLL_S)

    def _is_enabled(self) -> bool:
        return self._state.enabled()

    def _read(self, shard: _Shard) -> None:
        """The shard's new records, filtered, added to its pending batch."""
        if shard.iterator is None:  # a closed shard
            return
        try:
            got = self._streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        except Exception as error:  # moto restarting, a network blip: try again shortly
            log.warning("%s: GetRecords failed: %s", self.function.logical_id, error)
            return
        shard.iterator = got.get("NextShardIterator")
        records = [to_lambda_record(r, self.mapping.stream_arn) for r in got.get("Records", [])]
        kept = [r for r in records if matches(self.mapping.filters, r)]
        self.stats.records += len(records)
        self.stats.filtered += len(records) - len(kept)
        if kept and shard.window_closes is None:
            shard.window_closes = time.monotonic() + self.mapping.batching_window
        shard.pending += kept

    def _flush(self, shard: _Shard) -> None:
        """Invoke the pending batches that are full or whose window has closed."""
        size = self.mapping.batch_size
        while shard.pending and not self._stopping.is_set():
            closed = shard.window_closes is not None and time.monotonic() >= shard.window_closes
            if len(shard.pending) < size and not closed:
                return
            batch, shard.pending = shard.pending[:size], shard.pending[size:]
            self._deliver(shard.id, batch, self.mapping.maximum_retry_attempts)
            shard.window_closes = (
                time.monotonic() + self.mapping.batching_window if shard.pending else None
            )

    # Invoking -------------------------------------------------------------------------------

    def _deliver(self, shard_id: str, records: list[dict[str, Any]], retries: int) -> None:
        """Invoke until the batch succeeds; a failure retries it (in two halves, each on its
        own, when the mapping bisects) while retries remain; then it goes to the OnFailure
        destination."""
        attempts = 0
        while not self._stopping.is_set():
            outcome = self._invoke(records)
            attempts += 1
            if outcome.status == "ok" or self._stopping.is_set():
                return  # done, or killed by the stack's stop: not a failure of the batch
            self.stats.errors += 1
            error = outcome.error or {}
            log.warning(
                "%s: stream batch of %d failed (%s: %s)%s",
                self.function.logical_id,
                len(records),
                outcome.status,
                error.get("errorMessage", ""),
                "" if retries else "; no retries left",
            )
            if retries == 0:
                self._record_failure(shard_id, records, attempts)
                return
            retries -= 1 if retries > 0 else 0
            if self.mapping.bisect and len(records) > 1:
                half = len(records) // 2
                self._deliver(shard_id, records[:half], retries)
                self._deliver(shard_id, records[half:], retries)
                return
            self._stopping.wait(RETRY_WAIT_S)

    def _invoke(self, records: list[dict[str, Any]]) -> Outcome:
        with self._lock:
            container = self._container
        try:
            if container is None or not container.alive:
                if container is not None:
                    container.kill()  # reap the one that died
                container = Container(self.function, self.endpoint_url, self._write_log, 1)
                with self._lock:
                    self._container = container
                container.wait_ready(self.init_timeout)
        except ContainerError as error:
            with self._lock:
                self._container = None
            return Outcome("crash", error={"errorMessage": str(error)})
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(records))
        return container.invoke({"Records": records}, self.function.timeout)

    def _record_failure(self, shard_id: str, records: list[dict[str, Any]], attempts: int) -> None:
        """What Lambda sends to an OnFailure destination for a stream batch it gave up on."""
        self.stats.failed_batches += 1
        destination = self.mapping.on_failure
        if destination is None or destination.split(":")[2] != "sqs":
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        body = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first.get("SequenceNumber"),
                "endSequenceNumber": last.get("SequenceNumber"),
                "approximateArrivalOfFirstRecord": first.get("ApproximateCreationDateTime"),
                "approximateArrivalOfLastRecord": last.get("ApproximateCreationDateTime"),
                "batchSize": len(records),
                "streamArn": self.mapping.stream_arn,
            },
        }
        try:
            sqs = client("sqs", self.endpoint_url)
            url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
        except Exception as error:
            log.error("%s: could not record a failed batch: %s", self.function.logical_id, error)
