"""Shared fixtures: AWS credentials that go nowhere, and the stack's resources in moto."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from jobkit import aws
from jobkit.client import Jobkit
from jobkit.settings import Settings
from jobkit_tools.sqs_event import to_event
from jobkit_tools.testing import LambdaContext

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_function_app(function: str) -> ModuleType:
    """functions/<function>/app.py under a name of its own (every function has an `app`)."""
    spec = importlib.util.spec_from_file_location(
        f"{function}_function_app", ROOT / "functions" / function / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lambda_context(function: str, timeout_seconds: float = 30) -> LambdaContext:
    """What Lambda hands the handler of `function` (e.g. "EmailFunction")."""
    name = f"jobkit-dev-{function}"
    return LambdaContext(
        function_name=name,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        timeout_seconds=timeout_seconds,
    )


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:email"
) -> dict[str, Any]:
    """The event Lambda's SQS poller builds from messages received from moto."""
    return to_event(messages, queue_arn)


SCHEDULER_ROLE = "arn:aws:iam::123456789012:role/scheduler"


def scheduling_client(stack: Stack, group: str, setting: str) -> Jobkit:
    """A client whose `setting` (schedule_group or recurring_group) is a new group in moto."""
    boto3.client("scheduler").create_schedule_group(Name=group)
    return Jobkit(
        stack.settings.model_copy(update={setting: group, "scheduler_role_arn": SCHEDULER_ROLE})
    )


def stored_schedules(group: str) -> list[dict[str, Any]]:
    """Every schedule of a group, as GetSchedule returns it."""
    scheduler = boto3.client("scheduler")
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
    return [scheduler.get_schedule(Name=n, GroupName=group) for n in names]


def template() -> dict[str, Any]:
    """template.yaml as deployed: each worker block's functions/worker.yaml inlined, its
    resources named after the block (`Email` + `Queue` -> `EmailQueue`)."""
    from jobkit_tools.local.stack_template import deployed_template

    return deployed_template(ROOT / "template.yaml")


def resolved(value: Any) -> Any:
    """A template property's value, with a `!Ref` to a parameter read as its default."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return template()["Parameters"][value["Ref"]]["Default"]
    return value


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "jobkit")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    # Workers made here from the environment: nothing reads moto's stream in-process, so each
    # batch writes its page (a local stack's workers get "true" from their template).
    monkeypatch.setenv("JOBKIT_PAGES_FROM_STREAM", "false")
    aws.reset_clients()


@dataclass
class Stack:
    """The job log and the email queues of template.yaml, created in moto."""

    settings: Settings
    queue_url: str
    dlq_url: str

    @property
    def client(self) -> Jobkit:
        return Jobkit(self.settings)

    def worker_settings(self) -> Settings:
        return self.settings.model_copy(
            update={
                "worker_queue": "email",
                "queue_url": self.queue_url,
                "dead_letter_queue_url": self.dlq_url,
            }
        )

    def receive(self, url: str, wait: int = 0, visibility: int = 30) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait,
                VisibilityTimeout=visibility,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                return out
            out.extend(got)


def create_stack_resources() -> Stack:
    """Create the table and the email queues with the properties template.yaml gives them."""
    resources = template()["Resources"]
    table = resources["JobsTable"]["Properties"]
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName="jobs",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        BillingMode=table["BillingMode"],
    )
    pages = resources["JobPagesTable"]["Properties"]
    ddb.create_table(
        TableName="pages",
        AttributeDefinitions=pages["AttributeDefinitions"],
        KeySchema=pages["KeySchema"],
        BillingMode=pages["BillingMode"],
    )
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="email-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = resources["EmailQueue"]["Properties"]
    redrive = {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": str(queue["RedrivePolicy"]["maxReceiveCount"]),
    }
    queue_url = sqs.create_queue(
        QueueName="email",
        Attributes={
            "VisibilityTimeout": str(resolved(queue["VisibilityTimeout"])),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    settings = Settings(
        table="jobs",
        pages_table="pages",
        queues={"email": queue_url},
        dead_letter_queues={"email": dlq_url},
        pages_from_stream=False,  # nothing reads moto's stream here: the workers write pages
    )
    return Stack(settings, queue_url, dlq_url)


@pytest.fixture
def stack() -> Iterator[Stack]:
    from moto import mock_aws

    with mock_aws():
        aws.reset_clients()
        yield create_stack_resources()
    aws.reset_clients()
