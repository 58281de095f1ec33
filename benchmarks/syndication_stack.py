"""The syndication benchmark's stack (syndication.py), and the event source mapping's side.

moto (`mock_aws`) with the jobs table, a syndication queue and DLQ shaped as template.yaml's
(visibility, `maxReceiveCount`) and the RateLimitsTable; partners served as the local stack
serves them (`jobkit_tools.local.partners_process`: HTTPS on 127.0.0.1 in a process of their
own, a certificate from a trustme CA, HTTP/1.1 keep-alive), registered as an operator registers
them (`jobkit_tools.local.partners.register`: an SSM parameter under the partners path and a
Secrets Manager secret each); and the syndication worker's runtime pointed at them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks._common import (
    ROOT,
    esm_event,
    esm_receive,
    moto_stack,
    queue_arn,
    template,
)

FUNCTION = ROOT / "functions" / "syndication"
PARTNERS = ("alpha", "beta", "gamma")
PARTNERS_PATH = "/jobkit/bench/partners"
SECRETS_PATH = "jobkit/bench/partners"
RATE_TABLE = "jobkit-bench-rate-limits"
SECRET = "whsec_YmVuY2htYXJrLXN5bmRpY2F0aW9uLXNlY3JldA=="
CACHE_SECONDS = 60  # SYNDICATION_CACHE_SECONDS' default
LISTING = {
    "title": "2BR near the park, sunny, renovated kitchen",
    "price": 2450,
    "currency": "USD",
    "url": "https://homes.example.com/l/000",
    "description": (
        "Bright two-bedroom apartment on the third floor, five minutes from the park and the "
        "subway. Renovated kitchen, hardwood floors, laundry in the building. Available from "
        "the first of next month; pets considered."
    ),
}


def function_paths() -> None:
    """The syndication function's code importable, as in its Lambda package."""
    if str(FUNCTION) not in sys.path:
        sys.path.insert(0, str(FUNCTION))


@contextmanager
def partners(behaviours: Mapping[str, str]) -> Iterator[Any]:
    """The local stack's partner endpoints, by name and behaviour (`healthy` verifies every
    signature, `accept` answers 200 at once), all with the secret SECRET, in a process of
    their own: a partner is another machine, its work does not share this process's GIL."""
    from jobkit_tools.local.partners_process import PartnerProcess

    with PartnerProcess(behaviours, secrets=dict.fromkeys(behaviours, SECRET)) as servers:
        yield servers


class LambdaContext:
    """The bits of a LambdaContext the worker reads; SyndicationFunction's 120 s timeout."""

    function_name = "SyndicationFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SyndicationFunction"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 119_000


@dataclass
class Rig:
    """The syndication worker wired to moto and the loopback partners."""

    settings: Any
    queue_url: str
    dlq_url: str
    client: Any
    worker: Any
    peek: Any  # an uncounted SQS client: the harness looks at the queue with it
    poller: Any  # the event source mapping's client (its calls are counted by hand)


def _create_resources() -> tuple[str, str]:
    """The syndication queue and DLQ and the RateLimitsTable of template.yaml, in moto;
    returns the queue's URL and the DLQ's."""
    import boto3

    resources = template()["Resources"]
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="syndication-dlq")["QueueUrl"]
    queue = resources["SyndicationQueue"]["Properties"]
    redrive = {
        "deadLetterTargetArn": queue_arn(dlq_url),
        "maxReceiveCount": str(queue["RedrivePolicy"]["maxReceiveCount"]),
    }
    queue_url = sqs.create_queue(
        QueueName="syndication",
        Attributes={
            "VisibilityTimeout": str(queue["VisibilityTimeout"]),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    rate_table = resources["RateLimitsTable"]["Properties"]
    boto3.client("dynamodb").create_table(
        TableName=RATE_TABLE,
        AttributeDefinitions=rate_table["AttributeDefinitions"],
        KeySchema=rate_table["KeySchema"],
        BillingMode=rate_table["BillingMode"],
    )
    return queue_url, dlq_url


@contextmanager
def syndication_stack(servers: Any, names: list[str], rate: float, burst: int) -> Iterator[Rig]:
    """moto with the job log, the syndication queue + DLQ and RateLimitsTable of template.yaml,
    the partners `names` of `servers` registered, and the syndication worker's runtime pointed
    at them."""
    import boto3

    function_paths()
    from jobkit import aws
    from jobkit import client as client_module
    from jobkit.client import Jobkit
    from jobkit_tools.local.partners import register
    from syndication_worker.delivery import Sender
    from syndication_worker.partners import Registry
    from syndication_worker.processors import Runtime, use_runtime, worker
    from syndication_worker.ratelimit import RateLimiter

    with moto_stack() as stack:
        queue_url, dlq_url = _create_resources()
        register(
            servers,
            None,
            parameter_prefix=PARTNERS_PATH,
            secret_prefix=SECRETS_PATH,
            rate_per_second=rate,
            burst=burst,
            timeout_seconds=10,
            names=names,
        )
        settings = stack.settings.model_copy(
            update={
                "queues": {**stack.settings.queues, "syndication": queue_url},
                "dead_letter_queues": {**stack.settings.dead_letter_queues, "syndication": dlq_url},
                "worker_queue": "syndication",
                "queue_url": queue_url,
                "dead_letter_queue_url": dlq_url,
            }
        )
        client = Jobkit(settings)
        previous_default, client_module._default = client_module._default, client
        previous_settings = worker.use_settings(settings)
        previous_runtime = use_runtime(
            Runtime(
                Registry(PARTNERS_PATH, CACHE_SECONDS),
                RateLimiter(RATE_TABLE),
                Sender(str(servers.ca_bundle), allow_private_networks=True),
            )
        )
        # Every client jobkit will use, made now (so hooks can be set on them before any call).
        for service in ("dynamodb", "sqs", "ssm", "secretsmanager"):
            aws.client(service)
        try:
            yield Rig(
                settings,
                queue_url,
                dlq_url,
                client,
                worker,
                boto3.client("sqs"),
                boto3.client("sqs"),
            )
        finally:
            use_runtime(previous_runtime)
            worker.use_settings(previous_settings)
            client_module._default = previous_default


def visible(rig: Rig) -> int:
    attributes = rig.peek.get_queue_attributes(
        QueueUrl=rig.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def in_queue(rig: Rig, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = rig.peek.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(n, 0)) for n in names)


def receive_batch(rig: Rig) -> list[dict[str, Any]]:
    """One receive of the event source mapping's poller (up to a batch)."""
    return esm_receive(rig.poller, rig.queue_url)


def batch_event(rig: Rig, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda invokes the syndication function with, of these messages."""
    return esm_event(messages, rig.queue_url)


def kind(body: str) -> str:
    job_type = json.loads(body).get("type", "")
    return "deliver" if job_type == "syndication.deliver" else "publish"
