"""The real template.yaml on the local stack: what it deploys, and jobs through the email worker.

The stack runs with the SES throttling proxy in front of the email function, as the demo does.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from jobkit.client import Jobkit
from jobkit.models import Job
from jobkit_apps.email import SEND_INVITE, SEND_WELCOME
from jobkit_tools.local import LocalStack
from jobkit_tools.local.stack import client

from .conftest import wait_until

pytestmark = pytest.mark.e2e


def invite(to: str) -> dict[str, Any]:
    return {
        "to": to,
        "name": "Ada",
        "inviter_name": "Grace",
        "org_name": "Analytical Engines",
        "accept_url": "https://app.example.com/invites/1",
    }


def finished(producer: Jobkit, job_id: str, timeout: float = 60) -> Job:
    def done() -> Job | None:
        job = producer.get_job(job_id)
        return job if job is not None and job.state.finished else None

    job: Job = wait_until(done, timeout, interval=0.3, what=f"job {job_id} to finish")
    return job


def emails_to(stack: LocalStack, address: str) -> list[dict[str, Any]]:
    return [m for m in stack.sent_emails() if address in m["destinations"]]


def test_the_stack_deploys_template_yaml_and_exposes_its_outputs(jobkit_stack: LocalStack) -> None:
    # Given the local stack started from template.yaml with EmailMaximumConcurrency=3
    deployment = jobkit_stack.deployment
    url = jobkit_stack.endpoint_url

    # Then the stack's outputs are there, the layer's as an ARN
    outputs = deployment.outputs
    assert set(outputs) >= {
        "JobsTableName",
        "EmailQueueUrl",
        "EmailDeadLetterQueueUrl",
        "JobkitLayerArn",
        "AlarmTopicArn",
        "ScheduleGroupName",
        "SchedulerRoleArn",
    }
    # And every worker's queue and DLQ, each with its own output
    workers = [f for f in deployment.functions if "JOBKIT_WORKER_QUEUE" in f.environment]
    assert len(workers) == len(deployment.mappings)  # (the API function has no queue)
    for function in workers:
        name = function.environment["JOBKIT_WORKER_QUEUE"].capitalize()
        assert {f"{name}QueueUrl", f"{name}DeadLetterQueueUrl"} <= set(outputs)
    assert outputs["JobkitLayerArn"].startswith("arn:aws:lambda:us-east-1:")
    # And the schedule group the producers' settings name exists
    groups = client("scheduler", url).list_schedule_groups()["ScheduleGroups"]
    assert outputs["ScheduleGroupName"] in {g["Name"] for g in groups}
    # And the table has the template's indexes and TTL
    ddb = client("dynamodb", url)
    table = ddb.describe_table(TableName=outputs["JobsTableName"])["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"by_state"}
    ttl = ddb.describe_time_to_live(TableName=outputs["JobsTableName"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    # And the queue has its visibility timeout and its redrive policy to the DLQ
    sqs = client("sqs", url)
    attributes = sqs.get_queue_attributes(
        QueueUrl=outputs["EmailQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=outputs["EmailDeadLetterQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert attributes["VisibilityTimeout"] == "180"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 10
    # And the event source mapping is read back with the template's settings and the override
    (email_function,) = [f for f in deployment.functions if f.logical_id == "EmailFunction"]
    (mapping,) = [m for m in deployment.mappings if m.function_name == email_function.name]
    assert (mapping.batch_size, mapping.batching_window, mapping.maximum_concurrency) == (10, 1, 3)
    assert mapping.report_batch_item_failures
    (poller,) = [p for p in jobkit_stack.pollers if p.mapping.uuid == mapping.uuid]
    assert poller.concurrency == 3
    # And the alarm moto's CloudFormation cannot create exists, on the DLQ, to the topic
    alarms = client("cloudwatch", url).describe_alarms()["MetricAlarms"]
    (alarm,) = [a for a in alarms if a["Dimensions"][0]["Value"] == dlq_arn.rsplit(":", 1)[-1]]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": dlq_arn.rsplit(":", 1)[-1]}]
    assert alarm["AlarmActions"] == [outputs["AlarmTopicArn"]]
    # And the sender identity is verified, and .jobkit/local.json tells other terminals
    identities = client("sesv2", url).list_email_identities()["EmailIdentities"]
    assert "no-reply@example.com" in {i["IdentityName"] for i in identities}
    assert jobkit_stack.state_file is not None
    state = json.loads(jobkit_stack.state_file.read_text())
    assert state["endpoint_url"] == url
    assert state["outputs"] == outputs


def test_the_cli_finds_the_running_local_stack(
    jobkit_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobkit_tools.discover import find

    # Given no jobkit settings in the environment (restored after the test)
    monkeypatch.delenv("JOBKIT_TABLE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "unset")

    # When the CLI looks for a stack
    assert jobkit_stack.state_file is not None
    target = find(state_file=jobkit_stack.state_file)

    # Then it finds the local one, with its table and queues
    assert target.endpoint_url == jobkit_stack.endpoint_url
    assert target.settings.table == jobkit_stack.deployment.outputs["JobsTableName"]
    assert target.settings.queues["email"] == jobkit_stack.deployment.outputs["EmailQueueUrl"]


def test_an_invitation_enqueued_twice_is_sent_once(
    producer: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given an invitation enqueued twice with the same job id
    job_id = f"invite-{uuid.uuid4().hex[:8]}"
    address = f"ada-{job_id}@example.com"
    first = producer.enqueue(SEND_INVITE, invite(address), job_id=job_id)
    second = producer.enqueue(SEND_INVITE, invite(address), job_id=job_id)
    assert second.id == first.id

    # When the email function has run it
    job = finished(producer, job_id)

    # Then the job succeeded on its first attempt, and moto's SES has exactly one email
    assert job.state.value == "succeeded" and job.attempts == 1
    (email,) = emails_to(jobkit_stack, address)
    assert email["id"] == job.result["ses_message_id"]
    assert email["source"] == "no-reply@example.com"


def test_a_throttled_first_attempt_is_retried_and_succeeds(
    producer: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given a recipient the SES proxy throttles on the first SendEmail call
    job_id = f"flaky-{uuid.uuid4().hex[:8]}"
    address = f"flaky-{job_id}@example.com"
    producer.enqueue(SEND_WELCOME, {"to": address, "name": "Flo"}, job_id=job_id)

    # When the worker has dealt with it
    job = finished(producer, job_id)

    # Then the first attempt was throttled (every HTTP retry of that call) and the second sent it
    assert job.state.value == "succeeded" and job.attempts == 2
    assert jobkit_stack.proxy is not None
    assert len(jobkit_stack.proxy.stats.throttled_calls[address]) == 1
    assert jobkit_stack.proxy.stats.throttled_requests[address] >= 1
    assert len(emails_to(jobkit_stack, address)) == 1


def test_a_raw_envelope_with_an_invalid_address_fails_into_the_dlq(
    producer: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given a producer in another language that sends an envelope without validating it
    job_id = f"raw-{uuid.uuid4().hex[:8]}"
    envelope = {
        "v": 1,
        "id": job_id,
        "type": SEND_WELCOME.name,
        "payload": {"to": "not-an-address", "name": "Nobody"},
        "enqueued_at": datetime.now(UTC).isoformat(),
    }
    outputs = jobkit_stack.deployment.outputs
    sqs = client("sqs", jobkit_stack.endpoint_url)
    sqs.send_message(QueueUrl=outputs["EmailQueueUrl"], MessageBody=json.dumps(envelope))

    # When the worker has dealt with it
    job = finished(producer, job_id)

    # Then the job failed permanently on its first attempt, and its message is in the DLQ
    assert job.state.value == "failed" and job.attempts == 1
    assert job.error is not None and "invalid payload" in job.error

    def dead_letter() -> dict[str, Any] | None:
        for message in sqs.receive_message(
            QueueUrl=outputs["EmailDeadLetterQueueUrl"],
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=1,
        ).get("Messages", []):
            if message["MessageAttributes"]["jobkit-job-id"]["StringValue"] == job_id:
                return message
        return None

    message = wait_until(dead_letter, 10, what="the dead letter")
    assert "invalid payload" in message["MessageAttributes"]["jobkit-reason"]["StringValue"]


def test_a_paused_queue_holds_its_jobs_until_it_is_resumed(
    producer: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given the email queue paused (its event source mapping disabled), and its poller seeing it
    (poller,) = [p for p in jobkit_stack.pollers if p.function.logical_id == "EmailFunction"]
    assert producer.pause_queue("email") == ["Disabled"]
    try:
        wait_until(poller.paused.is_set, 15, what="the poller to hold off")
        assert producer.queue_overview(["email"])[0].paused is True
        # When a job is enqueued and a few of the poller's looks go by
        job_id = f"paused-{uuid.uuid4().hex[:8]}"
        producer.enqueue(SEND_WELCOME, {"to": f"{job_id}@example.com", "name": "P"}, job_id=job_id)
        time.sleep(3)  # what is checked is that nothing happens: three of the poller's looks
        assert poller.paused.is_set()
        # Then it has not run: still queued, its message waiting
        assert producer.get_job(job_id).state.value == "queued"  # type: ignore[union-attr]
    finally:
        # When the queue is resumed
        assert producer.resume_queue("email") == ["Enabled"]
    # Then the job runs
    assert finished(producer, job_id).state.value == "succeeded"


def test_the_overview_shows_how_long_the_oldest_message_has_waited(
    producer: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given a job waiting in the email queue, its worker paused
    (poller,) = [p for p in jobkit_stack.pollers if p.function.logical_id == "EmailFunction"]
    assert producer.pause_queue("email") == ["Disabled"]
    try:
        wait_until(poller.paused.is_set, 15, what="the poller to hold off")
        job_id = f"waits-{uuid.uuid4().hex[:8]}"
        producer.enqueue(SEND_WELCOME, {"to": f"{job_id}@example.com", "name": "W"}, job_id=job_id)

        # When the overview is read, then it shows the message's age from CloudWatch's metric
        # (which the local stack publishes as SQS does), growing past zero
        def waited() -> float | None:
            age = producer.queue_overview(["email"])[0].oldest_age_seconds
            return age if age is not None and age > 0 else None

        assert wait_until(waited, 30, what="an age above 0") >= 1
    finally:
        assert producer.resume_queue("email") == ["Enabled"]
    assert finished(producer, job_id).state.value == "succeeded"
