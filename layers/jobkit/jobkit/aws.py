"""boto3 clients, made lazily and once per process (a Lambda container reuses them).

Only the adapter modules (`store`, `queues`) call these. `AWS_ENDPOINT_URL` in the environment
points every client at another endpoint (the local stack's moto server).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

_clients: dict[str, Any] = {}
# Attempts per call, botocore's retries included. SES throttling is left to the job's own
# backoff: retrying it inside the call would hold up the rest of the batch for seconds.
_ATTEMPTS = {"sesv2": 1}
_lock = threading.Lock()


def client(service: str) -> Any:
    """A shared client for `service`; boto3 is imported on first use to keep cold starts short."""
    found = _clients.get(service)
    if found is None:
        with _lock:
            found = _clients.get(service)
            if found is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": _ATTEMPTS.get(service, 3)},
                    connect_timeout=5,
                    read_timeout=20,
                    tcp_keepalive=True,
                )
                found = _clients[service] = boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]
    return found


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]


def sqs() -> SQSClient:
    return client("sqs")  # type: ignore[no-any-return]


def reset_clients() -> None:
    """Forget every client (tests switch endpoints and credentials between cases)."""
    with _lock:
        _clients.clear()
