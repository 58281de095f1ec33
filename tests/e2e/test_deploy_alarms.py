"""template.yaml's alarms, alarm key, log groups and short timeouts, deployed on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit_tools.local.stack import LocalStackError, MotoServer, client, deploy

from .conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def moto_url(tmp_path: Path) -> Iterator[str]:
    """A moto server of the test's own (deploy only: no workers, no pollers)."""
    server = MotoServer(tmp_path / "moto.log")
    try:
        yield server.start()
    finally:
        server.stop()


def test_short_timeouts_alarms_key_and_log_groups_deploy_as_declared(moto_url: str) -> None:
    # Given template.yaml deployed with the short email timeouts a chaos test uses, and 7-day logs
    parameters = {
        "EmailFunctionTimeout": "12",
        "EmailVisibilityTimeout": "12",
        "LogRetentionDays": "7",
    }
    deployment = deploy(moto_url, ROOT / "template.yaml", parameters)
    sqs, kms = client("sqs", moto_url), client("kms", moto_url)
    topic = deployment.outputs["AlarmTopicArn"]

    # Then the email function and its queue have the short timeouts
    (email,) = [f for f in deployment.functions if f.logical_id == "EmailFunction"]
    (email_mapping,) = [m for m in deployment.mappings if m.function_name == email.name]
    email_queue = sqs.get_queue_attributes(
        QueueUrl=email_mapping.queue_url, AttributeNames=["VisibilityTimeout"]
    )["Attributes"]
    assert (email.timeout, email_queue["VisibilityTimeout"]) == (12, "12")

    # And the alarm topic is encrypted with the stack's own key, rotated, usable by CloudWatch
    attributes = client("sns", moto_url).get_topic_attributes(TopicArn=topic)["Attributes"]
    key_id = attributes["KmsMasterKeyId"]
    assert key_id == deployment.resources["AlarmTopicKey"]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    principals = [s["Principal"] for s in policy["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals

    # And every worker has its log group kept 7 days, and its four alarms, all to the topic
    groups = {
        g["logGroupName"]: g.get("retentionInDays")
        for g in client("logs", moto_url).describe_log_groups()["logGroups"]
    }
    alarms = client("cloudwatch", moto_url).describe_alarms()["MetricAlarms"]
    assert alarms and all(a["AlarmActions"] == [topic] for a in alarms)
    watched = {(a["MetricName"], a["Dimensions"][0]["Value"]) for a in alarms}
    assert deployment.mappings
    for mapping in deployment.mappings:
        assert groups[f"/aws/lambda/{mapping.function_name}"] == 7
        queue = sqs.get_queue_attributes(QueueUrl=mapping.queue_url, AttributeNames=["All"])
        redrive = json.loads(queue["Attributes"]["RedrivePolicy"])
        dead_letter_queue = redrive["deadLetterTargetArn"].rsplit(":", 1)[-1]
        assert {
            ("Errors", mapping.function_name),
            ("Throttles", mapping.function_name),
            ("ApproximateAgeOfOldestMessage", mapping.queue_arn.rsplit(":", 1)[-1]),
            ("ApproximateNumberOfMessagesVisible", dead_letter_queue),
        } <= watched
        # And the worker knows after how many receives its queue dead-letters a message
        (function,) = [f for f in deployment.functions if f.name == mapping.function_name]
        assert function.environment["JOBKIT_MAX_RECEIVE_COUNT"] == str(redrive["maxReceiveCount"])


def test_a_visibility_timeout_below_the_function_timeout_is_refused(moto_url: str) -> None:
    # Given an email queue that would hide a message for less than the function may run
    parameters = {"EmailFunctionTimeout": "30", "EmailVisibilityTimeout": "12"}
    # When it is deployed, Then it is refused, as AWS refuses the event source mapping
    with pytest.raises(LocalStackError, match=r"visibility timeout 12 s is less than .* 30 s"):
        deploy(moto_url, ROOT / "template.yaml", parameters)
