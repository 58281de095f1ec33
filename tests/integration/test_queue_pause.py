"""Pausing a queue disables its event source mapping; resuming enables it (the library and
`jobkit queues pause|resume`). The local stack's pollers honour it: tests/e2e/test_local_stack."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from typer.testing import CliRunner

from jobkit.errors import InvalidRequestError
from jobkit_tools.cli import app
from tests.conftest import Stack

runner = CliRunner()


def mapping_of(stack: Stack) -> str:
    """A function with an event source mapping on the email queue (as a worker block makes)."""
    role = boto3.client("iam").create_role(RoleName="worker", AssumeRolePolicyDocument="{}")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context): pass")
    lam = boto3.client("lambda")
    lam.create_function(
        FunctionName="email-worker",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="app.lambda_handler",
        Code={"ZipFile": code.getvalue()},
    )
    arn = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="email-worker")["UUID"]
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    return str(uuid)


def state_of(uuid: str) -> str:
    return str(boto3.client("lambda").get_event_source_mapping(UUID=uuid)["State"])


def test_pause_disables_the_queues_mapping_and_resume_enables_it(stack: Stack) -> None:
    # Given the email queue's worker mapping, enabled
    uuid = mapping_of(stack)
    assert stack.client.queue_overview(["email"])[0].paused is False
    # When the queue is paused, Then its mapping is disabled (the messages wait in SQS), and
    # the overview says so
    assert stack.client.pause_queue("email") == ["Disabled"]
    assert state_of(uuid) == "Disabled"
    assert stack.client.queue_overview(["email"])[0].paused is True
    # When it is resumed, Then the mapping is enabled again
    assert stack.client.resume_queue("email") == ["Enabled"]
    assert state_of(uuid) == "Enabled"
    assert stack.client.queue_overview(["email"])[0].paused is False


def test_a_queue_no_worker_reads_cannot_be_paused(stack: Stack) -> None:
    assert stack.client.queue_overview(["email"])[0].paused is None
    with pytest.raises(InvalidRequestError, match="no event source mapping reads queue 'email'"):
        stack.client.pause_queue("email")


def test_the_cli_pauses_and_resumes_a_queue(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a producer's environment and the email worker's mapping
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    spare = boto3.client("sqs").create_queue(QueueName="spare")["QueueUrl"]
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps({**stack.settings.queues, "spare": spare}))
    uuid = mapping_of(stack)
    # When an operator pauses the queue, Then the mapping is disabled
    paused = runner.invoke(app, ["queues", "pause", "email"])
    assert paused.exit_code == 0, paused.output
    assert "email paused" in paused.output and state_of(uuid) == "Disabled"
    # When they resume it, Then it is enabled
    resumed = runner.invoke(app, ["queues", "resume", "email"])
    assert resumed.exit_code == 0, resumed.output
    assert state_of(uuid) == "Enabled"
    # And a queue nothing reads is a one-line error, exit 2
    refused = runner.invoke(app, ["queues", "pause", "spare"])
    assert refused.exit_code == 2
    assert "no event source mapping reads queue 'spare'" in refused.output
