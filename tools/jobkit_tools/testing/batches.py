"""One batch of a hosted queue, as Lambda's event source mapping runs it: a receive, one
invocation with an SQS event and a Lambda context, then the records not reported as failures
deleted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobkit_tools.sqs_event import to_event
from jobkit_tools.testing.models import LambdaContext

if TYPE_CHECKING:
    from jobkit.settings import Settings
    from jobkit.worker import Worker


@dataclass
class Hosted:
    """A worker the harness runs, on its queue, with its event source mapping's settings."""

    worker: Worker
    queue_url: str
    queue_arn: str
    batch_size: int
    function_timeout: float
    previous: Settings | None  # the worker's settings before, put back when the harness stops


def receive(sqs: Any, hosted: Hosted, visibility_timeout: int) -> list[dict[str, Any]]:
    return list(
        sqs.receive_message(
            QueueUrl=hosted.queue_url,
            MaxNumberOfMessages=hosted.batch_size,
            VisibilityTimeout=visibility_timeout,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    )


def invoke(hosted: Hosted, messages: list[dict[str, Any]], region: str, account: str) -> set[str]:
    """Hand the messages to the worker as one invocation; the message ids it reports failed."""
    function = f"{hosted.worker.queue}-function"
    context = LambdaContext(
        function_name=function,
        invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:{function}",
        timeout_seconds=hosted.function_timeout,
    )
    event = to_event(messages, hosted.queue_arn)
    response = hosted.worker.handle(event, context)  # type: ignore[arg-type]
    return {str(f["itemIdentifier"]) for f in response.get("batchItemFailures", [])}


def delete(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    if messages:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def hidden_count(sqs: Any, queue_url: str) -> int:
    """Messages of the queue that are in flight or delayed."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())
