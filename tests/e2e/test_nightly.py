"""The nightly batch at full size on the local stack's moto: template.yaml's cron schedule fires,
and its run fans out 10,000 child jobs with `enqueue_many`, reporting progress on the parent.

The fan-out runs in this process, through the nightly worker's handler, so that every AWS
request it makes can be counted (botocore's `before-call` event on jobkit's clients). The
functions are not started; the test takes the children off the queue as they arrive, as the
nightly function would (moto's SQS costs O(queue length) per message sent: a queue left to grow
to 10,000 makes the run quadratic, ten minutes instead of under one).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jobkit import aws
from jobkit.client import Jobkit
from jobkit.models import JobState
from jobkit.settings import Settings, get_settings
from jobkit_tools.local.scheduler import ScheduleFirer
from jobkit_tools.local.stack import Deployment, MotoServer, client, deploy
from jobkit_tools.sqs_event import to_event

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 10_000


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    moto = MotoServer(tmp_path / "moto.log")
    endpoint = moto.start()
    try:
        yield deploy(endpoint, ROOT / "template.yaml", {"NightlyAccounts": str(ACCOUNTS)})
    finally:
        moto.stop()


@pytest.fixture
def nightly_env(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """This process configured as the nightly function is."""
    (function,) = [f for f in deployment.functions if f.name.startswith("NightlyFunction")] or [
        f for f in deployment.functions if "nightly" in f.environment.get("JOBKIT_WORKER_QUEUE", "")
    ]
    for key, value in {**deployment.producer_env(), **function.environment}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", deployment.endpoint_url)
    aws.reset_clients()
    get_settings.cache_clear()
    yield get_settings()
    aws.reset_clients()
    get_settings.cache_clear()


def count_requests() -> Counter[str]:
    """Count every request jobkit's clients make from now on, by service:operation."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    for service in ("dynamodb", "sqs"):
        aws.client(service).meta.events.register("before-call.*.*", count)
    return calls


class Consumer:
    """Takes each batch of children off the queue as soon as it is sent (the nightly function
    would), with a client of its own that is not counted; remembers each job id once."""

    def __init__(self, endpoint_url: str, queue_url: str) -> None:
        self.sqs = client("sqs", endpoint_url)
        self.queue_url = queue_url
        self.ids: set[str] = set()

    def drain(self, **_: Any) -> None:
        while messages := self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10
        ).get("Messages", []):
            self.ids.update(json.loads(m["Body"])["id"] for m in messages)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


def test_the_nightly_cron_fans_out_ten_thousand_children(
    deployment: Deployment, nightly_env: Settings
) -> None:
    from nightly_worker.processors import worker

    sqs = client("sqs", deployment.endpoint_url)
    queue_url = nightly_env.queue_url

    # Given template.yaml's nightly schedule, fired by Scheduler at 02:00 UTC
    tonight = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=2, minute=0, second=0, microsecond=0
    )
    firer = ScheduleFirer(deployment.endpoint_url, window_seconds=0, now=lambda: tonight)
    assert firer.tick() == 1
    (message,) = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    run_id = f"nightly-fan-out-dev@{tonight:%Y-%m-%dT%H:%M:%S}Z"
    assert json.loads(message["Body"])["id"] == run_id

    # When the nightly function runs it (as Lambda would hand it over), counting its requests
    calls = count_requests()
    event = to_event([message], "arn:aws:sqs:us-east-1:123456789012:nightly")
    context = SimpleNamespace(
        get_remaining_time_in_millis=lambda: 330_000,
        function_name="NightlyFunction",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:nightly",
        aws_request_id="e2e",
    )
    consumer = Consumer(deployment.endpoint_url, queue_url)
    aws.client("sqs").meta.events.register("after-call.sqs.SendMessageBatch", consumer.drain)
    started = time.monotonic()
    response = worker.handle(event, context)  # type: ignore[arg-type]
    seconds = time.monotonic() - started

    # Then the run succeeded, with every child enqueued and its progress at 100 %
    assert response == {"batchItemFailures": []}
    parent = Jobkit(nightly_env).get_job(run_id)
    assert parent is not None and parent.state is JobState.SUCCEEDED
    assert parent.result == {"children": ACCOUNTS, "already_enqueued": 0}
    assert parent.progress == {"enqueued": ACCOUNTS, "total": ACCOUNTS}
    assert len(consumer.ids) == ACCOUNTS  # one message per child, each child once
    assert all(i.startswith(f"{run_id}/acct-") for i in consumer.ids)
    child = Jobkit(nightly_env).get_job(f"{run_id}/acct-0010000")
    assert child is not None and child.state is JobState.QUEUED

    # And the requests are the minimum that keeps enqueue's guarantees: one conditional put
    # per child (the same write units as BatchWriteItem, which has no condition), 10 messages a
    # request, one progress write (a heartbeat too) per 1,000 children
    print(f"\nnightly fan-out of {ACCOUNTS:,}: {seconds:.1f} s, {sum(calls.values())} requests")
    for name, n in sorted(calls.items()):
        print(f"  {name}: {n}")
    progress_writes = ACCOUNTS // 1000
    # the children's puts and the run's own (adopted: a conditional put; then succeeded); the
    # listings' pages come from the job log's stream, not from this worker
    assert calls["dynamodb:PutItem"] == ACCOUNTS + 1
    assert calls["dynamodb:BatchWriteItem"] + calls["dynamodb:BatchGetItem"] == 0
    assert calls["sqs:SendMessageBatch"] == ACCOUNTS // 10
    assert calls["dynamodb:UpdateItem"] <= progress_writes + 2
    # each progress write also keeps the run's message hidden for its lease
    assert calls["sqs:ChangeMessageVisibility"] == progress_writes
    assert sum(calls.values()) <= ACCOUNTS + ACCOUNTS // 10 + 2 * progress_writes + 5
