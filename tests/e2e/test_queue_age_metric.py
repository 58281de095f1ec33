"""The local stack's moto server publishes `AWS/SQS ApproximateAgeOfOldestMessage` for every
queue as SQS counts it (`motoserver.publish_queue_ages`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobkit_tools.local.endpoint import MotoServer, client

from .conftest import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()


def age(url: str, queue: str) -> float | None:
    """The newest datapoint of the queue's metric (Maximum over a minute), as AWS has it."""
    now = datetime.now(UTC)
    found = client("cloudwatch", url).get_metric_data(
        MetricDataQueries=[
            {
                "Id": "age",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": queue}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        ScanBy="TimestampDescending",
    )["MetricDataResults"][0]
    return found["Values"][0] if found["Values"] else None


def new_queue(url: str, name: str) -> tuple[Any, str]:
    sqs = client("sqs", url)
    return sqs, sqs.create_queue(QueueName=name)["QueueUrl"]


def test_an_empty_queue_has_age_zero_and_a_waiting_message_ages(moto_url: str) -> None:
    # Given an empty queue, then its age is 0 (SQS publishes 0 for an active empty queue)
    sqs, queue = new_queue(moto_url, "ages")
    assert age(moto_url, "ages") == 0
    # When a message waits in it, then its age grows in whole seconds
    sqs.send_message(QueueUrl=queue, MessageBody="waiting")
    grown = wait_until(lambda: age(moto_url, "ages"), 30, what="an age above 0")
    assert grown >= 1 and grown == int(grown)
    # And the metric is listed, as AWS lists the metrics it publishes
    listed = client("cloudwatch", moto_url).list_metrics(
        Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage"
    )["Metrics"]
    assert {"Name": "QueueName", "Value": "ages"} in [d for m in listed for d in m["Dimensions"]]


def test_delayed_messages_and_those_received_three_times_do_not_count(moto_url: str) -> None:
    # Given a queue whose only message is delayed: it does not count yet
    sqs, queue = new_queue(moto_url, "ages-delayed")
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=900)
    assert age(moto_url, "ages-delayed") == 0
    # Given a message that has waited 3 seconds or more
    sqs.send_message(QueueUrl=queue, MessageBody="old")
    wait_until(lambda: (age(moto_url, "ages-delayed") or 0) >= 3, 30, what="an age of 3 s")
    # When it has been received three times (and is visible again), and a new one arrives
    for _ in range(3):
        got = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"]
        assert [m["Body"] for m in got] == ["old"]
    sent = time.time()
    sqs.send_message(QueueUrl=queue, MessageBody="new")
    # Then the age is the new one's (at most the time since it was sent), as SQS leaves a
    # message out after its third receive
    now_age = age(moto_url, "ages-delayed")
    assert now_age is not None and now_age <= time.time() - sent
