"""The nightly batch: a cron-fired parent fans out one child per account (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from jobkit import JobState
from jobkit.client import Jobkit
from jobkit_apps.nightly import FAN_OUT, REFRESH_ACCOUNT, FanOutPayload
from nightly_worker.processors import fan_out
from tests.conftest import Stack


@pytest.fixture
def nightly(stack: Stack) -> Iterator[Jobkit]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="nightly")["QueueUrl"]
    settings = stack.settings.model_copy(
        update={"queues": {**stack.settings.queues, "nightly": url}}
    )
    yield Jobkit(settings)


def queued_messages(client: Jobkit) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=client.settings.queues["nightly"],
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_the_parent_enqueues_one_child_per_account_and_reports_progress(
    nightly: Jobkit,
) -> None:
    # Given a nightly run over 45 accounts, reporting every 20 children
    progress: list[Any] = []

    # When it fans out
    result = fan_out(
        FanOutPayload(accounts=45, chunk=20),
        "nightly@2026-11-24T02:00:00Z",
        progress.append,
        nightly,
    )

    # Then 45 children are queued under ids of the run, and progress was reported per chunk
    assert result == {"children": 45, "already_enqueued": 0}
    assert queued_messages(nightly) == 45
    child = nightly.get_job("nightly@2026-11-24T02:00:00Z/acct-0000045")
    assert child is not None
    assert child.type == REFRESH_ACCOUNT.name and child.state is JobState.QUEUED
    assert progress == [
        {"enqueued": 20, "total": 45},
        {"enqueued": 40, "total": 45},
        {"enqueued": 45, "total": 45},
    ]


def test_a_retried_parent_does_not_enqueue_its_children_twice(nightly: Jobkit) -> None:
    # Given a run that already enqueued its 30 children (its first attempt died after that)
    run = "nightly@2026-11-25T02:00:00Z"
    fan_out(FanOutPayload(accounts=30, chunk=10), run, lambda _: None, nightly)

    # When its retry fans out again
    result = fan_out(FanOutPayload(accounts=30, chunk=10), run, lambda _: None, nightly)

    # Then nothing new is sent: every child is found already enqueued
    assert result == {"children": 0, "already_enqueued": 30}
    assert queued_messages(nightly) == 30


def test_the_fan_out_job_type_rejects_a_bad_payload() -> None:
    from jobkit import JobValidationError

    with pytest.raises(JobValidationError, match="accounts"):
        FAN_OUT.validate({"accounts": -1})


def test_the_sample_event_runs_through_the_nightly_handler(nightly: Jobkit) -> None:
    from nightly_worker.processors import worker
    from tests.conftest import EVENTS

    # Given the sample event of a scheduled run (events/nightly_fan_out.json, for sam local)
    event = json.loads((EVENTS / "nightly_fan_out.json").read_text())
    run_id = json.loads(event["Records"][0]["body"])["id"]
    previous = worker.use_settings(
        nightly.settings.model_copy(
            update={"worker_queue": "nightly", "queue_url": nightly.settings.queues["nightly"]}
        )
    )
    try:
        # When the nightly worker handles it
        response = worker.handle(event, None)
    finally:
        worker.use_settings(previous)

    # Then the run succeeded, adopted into the log, with its three children queued
    assert response == {"batchItemFailures": []}
    run = nightly.get_job(run_id)
    assert run is not None and run.state is JobState.SUCCEEDED
    assert run.result == {"children": 3, "already_enqueued": 0}
    assert queued_messages(nightly) == 3
