"""The other side of the warm benchmark: a minimal hand-written worker with jobkit's duties on
the happy path, the bare Powertools batch processor (context only), and what both are fed.

`HandWrittenWorker` is what a team would write without jobkit, on the same boto3 client
(`jobkit.aws.dynamodb()`) and the same Powertools logger: per record it parses the envelope
(`json.loads`), validates the payload with the job type's pydantic model, claims the job with
one conditional `UpdateItem` (queued -> running, attempts + 1, on the condition that it is
queued), calls the processor, records the outcome with a second conditional `UpdateItem`
(running -> succeeded, with the result), writes as many INFO lines per job as jobkit's worker
wrote in the same run (`InfoLines` counts them), and answers with a partial-batch response.
It does none of jobkit's other duties: no check that the message agrees with the log, no lease
or heartbeat, no retries, no dead letters, no metrics.
"""

from __future__ import annotations

import json
import logging
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


_LOGGER: Any = None


def baseline_logger() -> Any:
    """A Powertools JSON logger of its own (service `handwritten`), at INFO as deployed."""
    global _LOGGER
    if _LOGGER is None:
        from aws_lambda_powertools import Logger

        _LOGGER = Logger(service="handwritten", level="INFO", use_rfc3339=True)
    return _LOGGER


class HandWrittenWorker:
    """The happy path's duties, written by hand (see the module docstring)."""

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
        self.log = baseline_logger()

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            try:
                self._record(record)
            except Exception as exc:
                self.log.warning("job failed", extra={"error": repr(exc)})
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

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
