"""What the harness reads back for tests: dead letters (left where they are) and the emails
moto's SES accepted."""

from __future__ import annotations

import email
from typing import Any

from jobkit_tools.testing.models import DeadLetter, SentEmail

_ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")


def read_dead_letters(sqs: Any, url: str) -> list[DeadLetter]:
    """The messages in the dead-letter queue `url`, oldest first. They stay there: read, then
    sent back in the same order with the same body and message attributes (under new message
    ids), since on a frozen clock moto would hide a message it has just shown."""
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            break
        found.extend(got)
    letters = [
        DeadLetter(
            m["Body"],
            {
                name: str(value.get("StringValue", ""))
                for name, value in m.get("MessageAttributes", {}).items()
            },
        )
        for m in found
    ]
    for start in range(0, len(found), 10):
        _send_back(sqs, url, found[start : start + 10])
    return letters


def _send_back(sqs: Any, url: str, chunk: list[dict[str, Any]]) -> None:
    """Up to 10 received messages sent again as they were, and the received ones deleted."""
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageAttributes": {
                    name: {k: v for k, v in value.items() if k in _ATTRIBUTE_KEYS}
                    for name, value in m.get("MessageAttributes", {}).items()
                },
            }
            for i, m in enumerate(chunk)
        ],
    )
    sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
    )


def read_sent_emails(account: str, region: str) -> list[SentEmail]:
    """Every email moto's SES accepted, oldest first.

    Read from moto's SES backend (SES v2 shares v1's): AWS has no API that lists sent mail, so
    this one place reaches into moto rather than going through boto3.
    """
    from moto.ses.models import RawMessage, ses_backends

    sent: list[SentEmail] = []
    for message in ses_backends[account][region].sent_messages:
        if isinstance(message, RawMessage):
            parsed = email.message_from_string(message.raw_data)
            sent.append(
                SentEmail(
                    message.source,
                    list(message.destinations),
                    str(parsed.get("Subject", "")),
                    message.raw_data,
                )
            )
        else:
            destinations = message.destinations or {}
            sent.append(
                SentEmail(
                    message.source,
                    list(destinations.get("ToAddresses", [])),
                    message.subject,
                    message.body,
                )
            )
    return sent
