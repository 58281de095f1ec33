"""The other sides of the warm benchmark: a hand-written worker with jobkit's happy-path
duties (the target's baseline), one with fewer (context), the bare Powertools batch processor
(context), and what they are fed.

`HandWrittenWorker` is what a team would write without jobkit for the same job, on the same
boto3 client (`jobkit.aws.dynamodb()`), the same Powertools logger and metrics. Per record it
parses the envelope (`json.loads`); claims the job with one conditional `UpdateItem` (from
queued, retrying or scheduled, or running with its lease passed; attempts below max_attempts;
the message's type and payload equal to the log's: running, attempts + 1, a lease, the state
index entry removed; the attempt number back with `UPDATED_NEW`); validates the payload with
the job type's pydantic model and calls the processor; records the outcome with a second
conditional `UpdateItem` (this attempt, still running -> succeeded, with the result, the
duration, the TTL, the lease removed); writes as many INFO lines per job as jobkit's worker
wrote in the same run (`InfoLines` counts them); writes one EMF metrics line per batch (jobs
succeeded, their durations); and answers with a partial-batch response. What it leaves out is
what the happy path does not reach: the retry, dead-letter and hand-back paths, the
heartbeat, admissions, tracking modes.

`MinimalWorker` (context only) has fewer duties: it claims on `state = queued` alone, records
the result and nothing else, writes no metrics.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from benchmarks._common import BATCH_SIZE, payload, queue_arn, sqs_event


class InfoLines(logging.Filter):
    """Counts the INFO records a Powertools logger emits (a filter on its handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            self.count += 1
        return True


@contextmanager
def counting_info(powertools_logger: Any) -> Iterator[InfoLines]:
    handler = powertools_logger.registered_handler
    counter = InfoLines()
    handler.addFilter(counter)
    try:
        yield counter
    finally:
        handler.removeFilter(counter)


@contextmanager
def redirected(powertools_logger: Any, sink: Any) -> Iterator[None]:
    """Send a Powertools logger's lines to `sink` (the formatting work is still done)."""
    handler = powertools_logger.registered_handler
    old = handler.stream
    handler.stream = sink
    try:
        yield
    finally:
        handler.stream = old


_LOGGERS: dict[str, Any] = {}


def baseline_logger(service: str = "handwritten") -> Any:
    """A Powertools JSON logger of its own (service `handwritten`), at INFO as deployed."""
    if service not in _LOGGERS:
        from aws_lambda_powertools import Logger

        _LOGGERS[service] = Logger(service=service, level="INFO", use_rfc3339=True)
    return _LOGGERS[service]


class MinimalWorker:
    """Fewer duties than jobkit's (context, see the module docstring): a claim on `state =
    queued` alone and an outcome with the result, nothing else."""

    service = "minimal"  # its logger's

    def __init__(
        self,
        table: str,
        job_type: Any,
        processor: Callable[[Any, Any], Any],
        info_lines_per_job: Callable[[], int],
    ) -> None:
        self.table = table
        self.model = job_type.payload
        self.processor = processor
        self.info_lines_per_job = info_lines_per_job
        self.log = baseline_logger(self.service)
        self._setup(job_type)

    def _setup(self, job_type: Any) -> None:
        pass

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            try:
                self._record(record)
            except Exception as exc:
                self.log.warning("job failed", extra={"error": repr(exc)})
                failures.append({"itemIdentifier": record["messageId"]})
        self._batch_done()
        return {"batchItemFailures": failures}

    def _batch_done(self) -> None:
        pass

    def _record(self, record: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        from jobkit import aws

        envelope = json.loads(record["body"])
        job_id = envelope["id"]
        payload = self.model.model_validate(envelope["payload"])
        keys = {"job_id": job_id, "job_type": envelope["type"]}
        lines = self.info_lines_per_job()
        before = lines // 2
        ddb = aws.dynamodb()
        key = {"pk": {"S": job_id}}
        try:
            ddb.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #state = :running, attempts = attempts + :one, "
                "started_at = :now, updated_at = :now",
                ConditionExpression="#state = :queued",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":running": {"S": "running"},
                    ":queued": {"S": "queued"},
                    ":one": {"N": "1"},
                    ":now": {"S": datetime.now(UTC).isoformat()},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self.log.info("job skipped", extra=keys)  # a duplicate delivery
            return
        for _ in range(before):
            self.log.info("job processing", extra=keys)
        result = self.processor(payload, None)
        ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET #state = :succeeded, #result = :result, "
            "finished_at = :now, updated_at = :now",
            ConditionExpression="#state = :running",
            ExpressionAttributeNames={"#state": "state", "#result": "result"},
            ExpressionAttributeValues={
                ":succeeded": {"S": "succeeded"},
                ":running": {"S": "running"},
                ":result": {"S": json.dumps(result)},
                ":now": {"S": datetime.now(UTC).isoformat()},
            },
        )
        for _ in range(lines - before):
            self.log.info("job succeeded", extra=keys)


class HandWrittenWorker(MinimalWorker):
    """jobkit's happy-path duties written by hand (see the module docstring): the target's
    baseline."""

    service = "handwritten"

    def _setup(self, job_type: Any) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics

        self.lease_ms = int((job_type.timeout + 5) * 1000)
        self.retention_s = int(job_type.retention.succeeded.total_seconds())
        self.metrics = EphemeralMetrics(namespace="handwritten", service="handwritten")
        self.durations: list[int] = []

    def _batch_done(self) -> None:
        """One EMF line per batch: jobs succeeded and their durations."""
        if not self.durations:
            return
        self.metrics.add_metric(name="JobSucceeded", unit="Count", value=len(self.durations))
        for duration in self.durations:
            self.metrics.add_metric(name="JobDuration", unit="Milliseconds", value=duration)
        blob = self.metrics.serialize_metric_set()
        self.metrics.clear_metrics()
        self.durations = []
        self.log.registered_handler.stream.write(json.dumps(blob, separators=(",", ":")) + "\n")

    def _record(self, record: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        from jobkit import aws

        started = time.monotonic()
        envelope = json.loads(record["body"])
        job_id, body = envelope["id"], envelope["payload"]
        keys = {"job_id": job_id, "job_type": envelope["type"]}
        ddb = aws.dynamodb()
        key = {"pk": {"S": job_id}}
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        try:
            claimed = ddb.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #state = :running, attempts = attempts + :one, "
                "lease_until = :lease, started_at = :now, updated_at = :now "
                "REMOVE state_shard, next_attempt_at",
                ConditionExpression="(#state IN (:queued, :retrying, :scheduled) OR "
                "(#state = :running AND lease_until < :now_ms)) AND attempts < max_attempts "
                "AND #type = :type AND payload = :payload",
                ExpressionAttributeNames={"#state": "state", "#type": "type"},
                ExpressionAttributeValues={
                    ":running": {"S": "running"},
                    ":queued": {"S": "queued"},
                    ":retrying": {"S": "retrying"},
                    ":scheduled": {"S": "scheduled"},
                    ":one": {"N": "1"},
                    ":now": {"S": now.isoformat()},
                    ":now_ms": {"N": str(now_ms)},
                    ":lease": {"N": str(now_ms + self.lease_ms)},
                    ":type": {"S": envelope["type"]},
                    ":payload": {"S": json.dumps(body, separators=(",", ":"))},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self.log.info("job skipped", extra=keys)  # a duplicate delivery
            return
        attempt = claimed["Attributes"]["attempts"]["N"]
        result = self.processor(self.model.model_validate(body), None)
        duration_ms = int((time.monotonic() - started) * 1000)
        now = datetime.now(UTC)
        ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET #state = :succeeded, #result = :result, "
            "duration_ms = :duration, finished_at = :now, updated_at = :now, "
            "expires_at = :ttl REMOVE lease_until",
            ConditionExpression="#state = :running AND attempts = :attempt",
            ExpressionAttributeNames={"#state": "state", "#result": "result"},
            ExpressionAttributeValues={
                ":succeeded": {"S": "succeeded"},
                ":running": {"S": "running"},
                ":attempt": {"N": attempt},
                ":result": {"S": json.dumps(result)},
                ":duration": {"N": str(duration_ms)},
                ":now": {"S": now.isoformat()},
                ":ttl": {"N": str(int(now.timestamp()) + self.retention_s)},
            },
        )
        self.durations.append(duration_ms)
        extra = {**keys, "attempt": int(attempt), "duration_ms": duration_ms}
        for _ in range(self.info_lines_per_job()):
            self.log.info("job succeeded", extra=extra)


def bare_handler() -> Callable[[dict[str, Any], Any], Any]:
    """Powertools' BatchProcessor whose record handler only `json.loads` the body (context)."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    def record_handler(record: Any) -> Any:
        return json.loads(record.body)

    def handler(event: dict[str, Any], context: Any) -> Any:
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler


def seed_batch(table: str, job_type: Any, prefix: str, queue_url: str) -> dict[str, Any]:
    """Write a batch of queued jobs straight into the log (one `BatchWriteItem`, outside any
    measurement) and return the SQS event of their envelopes."""
    from jobkit import aws
    from jobkit.store_items import new_item

    ids = [f"{prefix}-{i}" for i in range(BATCH_SIZE)]
    payloads = [payload(zlib.crc32(job_id.encode()) & 0xFFFFFF) for job_id in ids]
    aws.dynamodb().batch_write_item(
        RequestItems={
            table: [
                {
                    "PutRequest": {
                        "Item": new_item(
                            job_id, job_type.name, job_type.queue, job_type.max_attempts, body
                        )
                    }
                }
                for job_id, body in zip(ids, payloads, strict=True)
            ]
        }
    )
    bodies = [
        json.dumps(
            {
                "v": 1,
                "id": job_id,
                "type": job_type.name,
                "payload": body,
                "enqueued_at": "2025-01-01T00:00:00Z",
            },
            separators=(",", ":"),
        )
        for job_id, body in zip(ids, payloads, strict=True)
    ]
    return sqs_event(bodies, queue_arn(queue_url))
