"""SQS messages as Lambda hands them to a function: the one builder of event records (the
local stack's event source mappings, the test harness, the tests and the benchmarks use it)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any


def to_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS `ReceiveMessage` message, as Lambda puts it into an event record."""
    attributes = {}
    for name, value in message.get("MessageAttributes", {}).items():
        attribute: dict[str, Any] = {
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [
                base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])
            ],
            "dataType": value["DataType"],
        }
        if "StringValue" in value:
            attribute["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        attributes[name] = attribute
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def to_event(messages: Iterable[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event of `ReceiveMessage` messages, as Lambda invokes a function with it."""
    return {"Records": [to_record(m, queue_arn) for m in messages]}
