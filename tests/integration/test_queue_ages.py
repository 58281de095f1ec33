"""The age of each queue's oldest message in the overview: CloudWatch's
`AWS/SQS ApproximateAgeOfOldestMessage`, as AWS publishes it (here put into moto's CloudWatch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto.core import set_initial_no_auth_action_count

from jobkit import aws
from jobkit.client import Jobkit
from jobkit.models import utcnow
from tests.conftest import Stack


def publish_age(queue_name: str, seconds: float, minutes_ago: float) -> None:
    """What SQS does every minute for an active queue."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                "Timestamp": utcnow() - timedelta(minutes=minutes_ago),
                "Value": seconds,
                "Unit": "Seconds",
            }
        ],
    )


@pytest.fixture
def two_queues(stack: Stack) -> Jobkit:
    """A client whose settings know the email queue and a second one, `billing`."""
    billing = boto3.client("sqs").create_queue(QueueName="billing")["QueueUrl"]
    queues = {**stack.settings.queues, "billing": billing}
    return Jobkit(stack.settings.model_copy(update={"queues": queues}))


def metric_reads() -> list[dict[str, Any]]:
    """Every GetMetricData call jobkit's shared CloudWatch client makes from now on."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "GetMetricData":
            calls.append(params)

    aws.client("cloudwatch").meta.events.register("provide-client-params", record)
    return calls


def test_the_overview_shows_the_newest_age_of_each_queue_from_one_metric_read(
    stack: Stack, two_queues: Jobkit
) -> None:
    # Given datapoints of the email queue's oldest message (an older one, then the newest)
    publish_age("email", 100, minutes_ago=3)
    publish_age("email", 250, minutes_ago=1)
    # and one of another queue, and one of the billing queue from long ago
    publish_age("email-dlq", 9999, minutes_ago=1)
    publish_age("billing", 42, minutes_ago=30)
    calls = metric_reads()
    # When the overview of both queues is read
    email, billing = two_queues.queue_overview(["email", "billing"])
    # Then the email queue shows its newest age, and billing none (no recent datapoint)
    assert email.oldest_age_seconds == 250
    assert billing.oldest_age_seconds is None
    # from one GetMetricData for both queues (Maximum a minute, by SQS's queue name)
    assert len(calls) == 1
    queries = calls[0]["MetricDataQueries"]
    assert [q["MetricStat"]["Metric"]["Dimensions"] for q in queries] == [
        [{"Name": "QueueName", "Value": "email"}],
        [{"Name": "QueueName", "Value": "billing"}],
    ]
    assert {q["MetricStat"]["Stat"] for q in queries} == {"Maximum"}


def test_without_datapoints_the_age_is_unknown(stack: Stack) -> None:
    # Given no datapoint at all (a queue SQS has not published for)
    # When the overview is read, then the age is None, not 0
    (email,) = stack.client.queue_overview(["email"])
    assert email.oldest_age_seconds is None


@pytest.fixture
def operator_without_metrics(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Credentials of an IAM user who may use SQS, DynamoDB and Lambda but not CloudWatch, with
    moto checking every request against the user's policy."""
    iam = boto3.client("iam")
    iam.create_user(UserName="operator")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["sqs:*", "dynamodb:*", "lambda:*"], "Resource": "*"}
        ],
    }
    iam.put_user_policy(UserName="operator", PolicyName="ops", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    publish_age("email", 250, minutes_ago=1)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it holds the credentials it read
    aws.reset_clients()
    yield
    aws.reset_clients()


@set_initial_no_auth_action_count(0)
def test_an_operator_who_may_not_read_metrics_still_gets_the_counts(
    stack: Stack, operator_without_metrics: None
) -> None:
    # Given an operator denied cloudwatch:GetMetricData, and a datapoint there
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    with pytest.raises(sqs.exceptions.ClientError, match="not authorized"):
        boto3.client("cloudwatch").get_metric_data(
            MetricDataQueries=[], StartTime=utcnow() - timedelta(hours=1), EndTime=utcnow()
        )
    # When the operator reads the overview
    (email,) = stack.client.queue_overview(["email"])
    # Then the counts are there and the age is unknown, with no error
    assert email.waiting == 1
    assert email.oldest_age_seconds is None
