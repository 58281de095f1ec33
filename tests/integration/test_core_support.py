"""Shared pieces of the core behaviour tests (no tests here): test job types, an SQS event
built from messages received from moto, a Lambda event source mapping stand-in, and a
recorder of the AWS calls jobkit makes."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from pydantic import BaseModel, ConfigDict, EmailStr

from jobkit import aws
from jobkit.jobs import Backoff, JobType
from jobkit.worker import JobContext, Worker
from tests.conftest import sqs_event

if TYPE_CHECKING:
    from tests.conftest import Stack


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: EmailStr
    n: int = 0


# Hosted by the worker of queue "email"; tiny backoff so that no test waits for real.
ECHO = JobType(
    "test.core.echo",
    EchoPayload,
    queue="email",
    max_attempts=3,
    backoff=Backoff(base=0.01, cap=0.05),
    timeout=5,
)
OTHER = JobType(
    "test.core.other",
    EchoPayload,
    queue="email",
    max_attempts=1,
    backoff=Backoff(base=0.01, cap=0.05),
    timeout=5,
)

RECIPIENT = "ada.lovelace@example.com"


def payload(n: int = 0) -> dict[str, Any]:
    return {"to": RECIPIENT, "n": n}


@dataclass
class Runs:
    """A processor whose behaviour each test scripts: one action per call, then succeed."""

    actions: list[BaseException | None] = field(default_factory=list)
    calls: list[tuple[int, str, int]] = field(default_factory=list)  # (n, job id, attempt)

    def __call__(self, p: EchoPayload, ctx: JobContext) -> dict[str, Any]:
        self.calls.append((p.n, ctx.job_id, ctx.attempt))
        if self.actions:
            action = self.actions.pop(0)
            if action is not None:
                raise action
        return {"echo": p.n, "attempt": ctx.attempt}


def make_worker(stack: Stack, runs: Callable[[Any, JobContext], Any]) -> Worker:
    worker = Worker("email", stack.worker_settings())
    worker.processor(ECHO)(runs)
    worker.processor(OTHER)(runs)
    return worker


def deliver(stack: Stack, worker: Worker, messages: list[dict[str, Any]]) -> list[str]:
    """What the event source mapping does: invoke the worker with the batch, delete the
    records it did not report, and return the ids of those it reported as failures."""
    response = worker.handle(sqs_event(messages), None)
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    sqs = boto3.client("sqs")
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return failed


def receive_now(stack: Stack) -> list[dict[str, Any]]:
    """Receive the queue's visible messages without hiding them (VisibilityTimeout 0), so
    that only the worker's own ChangeMessageVisibility can hide one."""
    got = boto3.client("sqs").receive_message(
        QueueUrl=stack.queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
    )
    return list(got.get("Messages", []))


def make_visible(stack: Stack, messages: list[dict[str, Any]]) -> None:
    """Let the time of a backoff or deferral pass, without sleeping through it."""
    sqs = boto3.client("sqs")
    for m in messages:
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )


def dead_letters(stack: Stack) -> list[dict[str, Any]]:
    return stack.receive(stack.dlq_url)


def reason_of(message: dict[str, Any]) -> str:
    return str(message["MessageAttributes"]["jobkit-reason"]["StringValue"])


def body_of(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message["Body"])  # type: ignore[no-any-return]


@dataclass
class Calls:
    """Every SQS and DynamoDB API call jobkit's shared clients make, with its parameters."""

    ops: Counter[str] = field(default_factory=Counter)
    params: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.ops[model.name] += 1
        self.params[model.name].append(dict(params))

    def reset(self) -> None:
        self.ops.clear()
        self.params.clear()

    @property
    def dynamodb_writes(self) -> int:
        return sum(self.ops[op] for op in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"))


def record_calls() -> Calls:
    calls = Calls()
    for client in (aws.sqs(), aws.dynamodb()):
        client.meta.events.register("provide-client-params", calls)
    return calls
