"""SQS adapter: send jobs, back off, dead-letter, move dead letters back, count messages, look
into a queue without consuming it, purge. A failed AWS call comes out as a `ServiceError`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.errors import ServiceError
from jobkit.models import SQS_MAX_DELAY_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# SQS caps a visibility timeout at 12 hours.
MAX_VISIBILITY_SECONDS = 43_200
# SendMessageBatch: at most 10 entries and 256 KiB in all.
BATCH_ENTRIES = 10
BATCH_BYTES = 262_144


@dataclass(frozen=True)
class Outgoing:
    """One message for `send_many`; `key` identifies it in the result."""

    key: str
    body: str
    delay_seconds: int = 0


@aws.service_errors
def send(queue_url: str, body: str, delay_seconds: int = 0) -> str:
    response = aws.sqs().send_message(
        QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay_seconds
    )
    return response["MessageId"]


@aws.service_errors
def send_many(queue_url: str, messages: list[Outgoing], attempts: int = 4) -> dict[str, str]:
    """SendMessageBatch in batches of 10 entries / 256 KiB, retrying failed entries that were
    not the sender's fault. Returns {key: reason} for the messages that were not sent."""
    failed: dict[str, str] = {}
    for chunk in _chunks(messages):
        pending = {m.key: m for m in chunk}
        for attempt in range(attempts):
            entries: list[Any] = [
                {"Id": str(i), "MessageBody": m.body, "DelaySeconds": m.delay_seconds}
                for i, m in enumerate(pending.values())
            ]
            by_id = dict(zip((e["Id"] for e in entries), pending.values(), strict=True))
            response = aws.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
            retry: dict[str, Outgoing] = {}
            for entry in response.get("Failed", []):
                message = by_id[entry["Id"]]
                reason = f"{entry.get('Code')}: {entry.get('Message', '')}"
                if entry.get("SenderFault") or attempt == attempts - 1:
                    failed[message.key] = reason
                else:
                    retry[message.key] = message
            if not retry:
                break
            pending = retry
            time.sleep(0.1 * 2**attempt)
    return failed


def _chunks(messages: list[Outgoing]) -> list[list[Outgoing]]:
    chunks: list[list[Outgoing]] = []
    current: list[Outgoing] = []
    size = 0
    for message in messages:
        length = len(message.body.encode())
        if current and (len(current) == BATCH_ENTRIES or size + length > BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(message)
        size += length
    if current:
        chunks.append(current)
    return chunks


@aws.service_errors
def hide(queue_url: str, receipt_handle: str, seconds: float) -> None:
    """Make a received message visible again after `seconds` (backoff, deferral)."""
    timeout = min(max(math.ceil(seconds), 0), MAX_VISIBILITY_SECONDS)
    aws.sqs().change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=timeout
    )


def hide_quietly(queue_url: str, receipt_handle: str, seconds: float) -> bool:
    """`hide`, reporting failure (an expired receipt handle, ...) instead of raising it."""
    try:
        hide(queue_url, receipt_handle, seconds)
    except ServiceError:
        return False
    return True


def resend(queue_url: str, body: str, seconds: float, attributes: dict[str, str]) -> bool:
    """Send a fresh copy of a message, due after `seconds` (at most SQS's 15 minutes; a later
    one is held again when it comes). False if it could not be sent."""
    from botocore.exceptions import BotoCoreError, ClientError

    extra: dict[str, Any] = {}
    if attributes:
        extra["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        }
    try:
        aws.sqs().send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            DelaySeconds=min(max(math.ceil(seconds), 0), SQS_MAX_DELAY_SECONDS),
            **extra,
        )
    except (BotoCoreError, ClientError):
        return False
    return True


@aws.service_errors
def dead_letter(dlq_url: str, body: str, reason: str, job_id: str | None, source: str) -> None:
    """Put a message in a DLQ with why it is there (message attributes survive a redrive)."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        "jobkit-reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
        "jobkit-source-queue": {"DataType": "String", "StringValue": source or "unknown"},
    }
    if job_id:
        attributes["jobkit-job-id"] = {"DataType": "String", "StringValue": job_id}
    aws.sqs().send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=attributes)


@aws.service_errors
def arn_of(queue_url: str) -> str:
    """The ARN of a queue from its URL (…/<account>/<name>), without a request."""
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{aws.sqs().meta.region_name}:{account}:{name}"


@aws.service_errors
def queue_arn(queue_url: str) -> str:
    response = aws.sqs().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return response["Attributes"]["QueueArn"]


@aws.service_errors
def start_move_task(source_arn: str, destination_arn: str) -> str | None:
    """StartMessageMoveTask, or None where the endpoint lacks it (moto, older emulators)."""
    from botocore.exceptions import ClientError

    try:
        response = aws.sqs().start_message_move_task(
            SourceArn=source_arn, DestinationArn=destination_arn
        )
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in {"InvalidAction", "NotImplemented", "UnsupportedOperation"} or status in {
            404,
            500,
            501,
        }:
            return None
        raise
    except NotImplementedError:
        return None
    return response["TaskHandle"]


# SQS's approximate message counts, by the names `approximate_counts` gives them.
_COUNTS: dict[str, QueueAttributeNameType] = {
    "waiting": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
_NO_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


@aws.service_errors
def approximate_counts(queue_url: str) -> dict[str, int] | None:
    """{"waiting", "in_flight", "delayed": SQS's approximate counts} of a queue (one
    GetQueueAttributes), or None if there is no such queue."""
    from botocore.exceptions import ClientError

    try:
        response = aws.sqs().get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=list(_COUNTS.values()),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NO_QUEUE:
            return None
        raise
    found = response.get("Attributes", {})
    return {name: int(found.get(attribute, "0")) for name, attribute in _COUNTS.items()}


@dataclass(frozen=True)
class Received:
    body: str
    receipt_handle: str


@aws.service_errors
def receive(queue_url: str, wait_seconds: int = 1, visibility: int = 60) -> list[Received]:
    response = aws.sqs().receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=visibility,
    )
    return [Received(m["Body"], m["ReceiptHandle"]) for m in response.get("Messages", [])]


@aws.service_errors
def delete_many(queue_url: str, receipt_handles: list[str]) -> None:
    for start in range(0, len(receipt_handles), BATCH_ENTRIES):
        entries: list[Any] = [
            {"Id": str(i), "ReceiptHandle": h}
            for i, h in enumerate(receipt_handles[start : start + BATCH_ENTRIES])
        ]
        aws.sqs().delete_message_batch(QueueUrl=queue_url, Entries=entries)


@dataclass(frozen=True)
class Peeked:
    """A message received to be looked at, with what SQS says about it."""

    message_id: str
    body: str
    receipt_handle: str
    attributes: dict[str, str]  # its message attributes' string values
    sent_timestamp_ms: int
    receive_count: int


@aws.service_errors
def receive_peeked(queue_url: str, visibility: int = 30) -> list[Peeked]:
    """One ReceiveMessage of up to 10 messages (no waiting), hidden for `visibility` seconds:
    give them back with `release`."""
    response = aws.sqs().receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH_ENTRIES,
        WaitTimeSeconds=0,
        VisibilityTimeout=visibility,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
    )
    return [
        Peeked(
            message_id=m["MessageId"],
            body=m["Body"],
            receipt_handle=m["ReceiptHandle"],
            attributes={
                name: value.get("StringValue", "")
                for name, value in m.get("MessageAttributes", {}).items()
            },
            sent_timestamp_ms=int(m.get("Attributes", {}).get("SentTimestamp", "0")),
            receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "0")),
        )
        for m in response.get("Messages", [])
    ]


@aws.service_errors
def release(queue_url: str, receipt_handles: list[str]) -> None:
    """Make received messages visible again at once (ChangeMessageVisibilityBatch, 0)."""
    for start in range(0, len(receipt_handles), BATCH_ENTRIES):
        entries: list[Any] = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(receipt_handles[start : start + BATCH_ENTRIES])
        ]
        aws.sqs().change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


@aws.service_errors
def purge(queue_url: str) -> None:
    """PurgeQueue: every message in the queue is deleted (SQS takes up to a minute)."""
    aws.sqs().purge_queue(QueueUrl=queue_url)
