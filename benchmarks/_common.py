"""What the benchmarks share: paths, a fake AWS environment, the moto stack, a test job type,
SQS events shaped the way Lambda's event source mapping delivers them (`jobkit_tools.sqs_event`
builds them), the poller's receive and delete, and the result rows."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "jobkit"
APPS_LAYER = ROOT / "layers" / "apps"
TOOLS = ROOT / "tools"
PRICES = Path(__file__).resolve().parent / "prices.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
BATCH_SIZE = 10

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def deployed(settings: Any) -> Any:
    """A worker's settings as a stack deploys them: the job log's stream writes the job pages
    (JobPagesFunction), so the worker writes none."""
    return settings.model_copy(update={"pages_from_stream": True})


def setup_process() -> None:
    """Credentials that go nowhere, and the library importable from a plain checkout."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "jobkit")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "bench")
    for path in (str(LAYER), str(APPS_LAYER), str(TOOLS), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)


def template() -> dict[str, Any]:
    """template.yaml as deployed, each worker block's functions/worker.yaml inlined, as the
    tests read it (`Syndication` + `Queue` -> `SyndicationQueue`)."""
    from jobkit_tools.local.stack_template import deployed_template

    return deployed_template(ROOT / "template.yaml")


def prices() -> dict[str, Any]:
    return json.loads(PRICES.read_text())  # type: ignore[no-any-return]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Result:
    """One line of the final summary."""

    benchmark: str
    measure: str
    value: float
    target: float | None  # None: informational
    unit: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "INFO"
        if self.value != self.value:  # NaN: could not measure
            return "SKIP"
        return "PASS" if self.value <= self.target else "MISS"


# -- the stack in moto ---------------------------------------------------------------------


@contextmanager
def moto_stack() -> Iterator[Any]:
    """moto's in-process AWS with the table and queues of template.yaml (tests/conftest.py)."""
    from moto import mock_aws

    from jobkit import aws

    setup_process()
    from tests.conftest import create_stack_resources

    with mock_aws():
        aws.reset_clients()
        try:
            yield create_stack_resources()
        finally:
            aws.reset_clients()


_JOB_TYPES: dict[str, Any] = {}


def bench_job_type(tracking: str = "full") -> Any:
    """`bench.noop` on the email queue: a payload shaped like a real email job's references;
    with another tracking mode, `bench.noop.<tracking>`."""
    if tracking not in _JOB_TYPES:
        from pydantic import BaseModel, ConfigDict

        from jobkit.jobs import JobType

        class NoopPayload(BaseModel):
            model_config = ConfigDict(extra="forbid", frozen=True)

            user_id: str
            org_id: str
            template: str
            url: str

        name = "bench.noop" if tracking == "full" else f"bench.noop.{tracking}"
        _JOB_TYPES[tracking] = JobType(
            name, NoopPayload, "email", max_attempts=5, timeout=10.0, tracking=tracking
        )
    return _JOB_TYPES[tracking]


def payload(i: int) -> dict[str, str]:
    return {
        "user_id": f"usr_{i:08d}",
        "org_id": "org_00042",
        "template": "invitation",
        "url": f"https://app.example.com/invite/{uuid.UUID(int=i).hex}",
    }


def noop_processor(payload: Any, ctx: Any) -> None:
    return None


def message(body: str) -> dict[str, Any]:
    """An SQS message of `body` as `ReceiveMessage` returns it, made without a queue: a fresh
    id and receipt handle, received once."""
    message_id = str(uuid.uuid4())
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
    }


def sqs_event(bodies: list[str], queue_arn: str) -> dict[str, Any]:
    """A Lambda SQS event of these bodies, each in a message made by `message`."""
    from jobkit_tools.sqs_event import to_event

    return to_event([message(b) for b in bodies], queue_arn)


# -- the event source mapping's poller ------------------------------------------------------


def esm_receive(poller: Any, queue_url: str) -> list[dict[str, Any]]:
    """One ReceiveMessage of up to a batch, as the event source mapping makes it (no wait)."""
    return poller.receive_message(  # type: ignore[no-any-return]
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH_SIZE,
        WaitTimeSeconds=0,
        AttributeNames=["All"],
    ).get("Messages", [])


def esm_event(messages: list[dict[str, Any]], queue_url: str) -> dict[str, Any]:
    """The event Lambda invokes the function with, of messages received from `queue_url`."""
    from jobkit_tools.sqs_event import to_event

    return to_event(messages, queue_arn(queue_url))


def esm_delete(
    poller: Any, queue_url: str, messages: list[dict[str, Any]], failed: set[str] | None = None
) -> list[dict[str, Any]]:
    """DeleteMessageBatch of the messages whose ids are not in `failed` (the batch's
    `batchItemFailures`), when there are any. Returns the messages deleted."""
    done = [m for m in messages if m["MessageId"] not in (failed or set())]
    if done:
        poller.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
            ],
        )
    return done


def failed_ids(response: Mapping[str, Any]) -> set[str]:
    """The message ids a batch response reports as failed."""
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


class FakeContext:
    """The bits of a LambdaContext the worker and Powertools read."""

    function_name = "EmailFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:EmailFunction"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def queue_arn(url: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url.rstrip('/').rsplit('/', 1)[-1]}"


class CountingSink:
    """A stream that counts what the worker logs (bytes CloudWatch Logs would ingest)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


@contextmanager
def quiet_logs(sink: CountingSink | None = None) -> Iterator[CountingSink]:
    """Send the Powertools logger's JSON lines and EMF metrics (print) to a counting sink.

    The work of formatting them is still done (Lambda pays it too); only the terminal is spared.
    """
    from contextlib import redirect_stdout

    from jobkit.observability import logger

    sink = sink or CountingSink()
    handler = logger.registered_handler
    old = handler.stream  # type: ignore[attr-defined]
    handler.stream = sink  # type: ignore[attr-defined]
    try:
        with redirect_stdout(sink):
            yield sink
    finally:
        handler.stream = old  # type: ignore[attr-defined]


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"
