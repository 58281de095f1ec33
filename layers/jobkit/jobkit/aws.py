"""boto3 clients, made lazily and once per process (a Lambda container reuses them), and
botocore's errors turned into jobkit's.

Only the adapter modules (`store` and the job log modules under it, `queues`, `schedules`)
call these; their public calls raise `ServiceError` (`service_errors`), never botocore's own
errors. `AWS_ENDPOINT_URL` in the environment points every client at another endpoint (the
local stack's moto server).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobkit.errors import ServiceError
from jobkit.redact import redact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

_clients: dict[str, Any] = {}
# One boto3 session for all of them: a session loads botocore's endpoint and partition data on
# its first client (~40 ms), so a session per client made every cold start pay for it again.
# Sessions are not thread-safe; clients are only made under `_lock`. The loader (botocore's
# parsed JSON models, no credentials or settings) outlives `reset_clients`, which tests call
# between cases.
_session: Any = None
_loader: Any = None
# Attempts per call, botocore's retries included. SES throttling is left to the job's own
# backoff: retrying it inside the call would hold up the rest of the batch for seconds.
_ATTEMPTS = {"sesv2": 1}
DEFAULT_ATTEMPTS = 3
# Threads (and so connections) `enqueue_many` writes with.
ENQUEUE_THREADS = 16
# Seconds to connect and to wait for an answer. A call that sends something out of AWS's
# control (an email) must give up inside its job's lease, or a second attempt could start
# while the first one's request is still in flight: `worst_case_seconds` is what the tests
# hold against every built-in job type's timeout.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
_lock = threading.Lock()


def worst_case_seconds(service: str) -> float:
    """The longest one call to `service` can take before it gives up (every attempt timing
    out, plus the backoff between them)."""
    attempts = _ATTEMPTS.get(service, DEFAULT_ATTEMPTS)
    # botocore's standard mode waits random() * 2^(n-1) s before retry n
    backoff = sum(2.0**n for n in range(attempts - 1))
    return attempts * (CONNECT_TIMEOUT + READ_TIMEOUT) + backoff


def client(service: str) -> Any:
    """A shared client for `service`; boto3 is imported on first use to keep cold starts short."""
    global _session
    found = _clients.get(service)
    if found is None:
        with _lock:
            found = _clients.get(service)
            if found is None:
                from botocore.config import Config

                config = Config(
                    retries={
                        "mode": "standard",
                        # (botocore's `max_attempts` would count retries only)
                        "total_max_attempts": _ATTEMPTS.get(service, DEFAULT_ATTEMPTS),
                    },
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    tcp_keepalive=True,
                    # botocore checks each call's parameters against the service model before
                    # sending it: ~50 µs of CPU a call, 8 % of a warm record (BENCHMARKS.md
                    # section 2). jobkit's calls are fixed shapes filled from validated models;
                    # the serializer still refuses an unknown parameter, and AWS checks every
                    # value again on arrival.
                    parameter_validation=False,
                    # enqueue_many writes its jobs in parallel, one conditional put each
                    max_pool_connections=ENQUEUE_THREADS,
                )
                if _session is None:
                    _session = new_session()
                found = _clients[service] = _session.client(service, config=config)
    return found


def new_session(**options: Any) -> Any:
    """A boto3 session (`options`: region_name, credentials) sharing one botocore data loader
    with the others: a new loader spends ~50 ms a service parsing botocore's JSON models."""
    import boto3
    import botocore.session

    global _loader
    core = botocore.session.Session()
    if _loader is None:
        _loader = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core, **options)


def service_errors[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Let an AWS error out of `fn` (a public call of the library) as a `ServiceError`: every
    error the library raises is a `JobkitError`; the botocore one is kept as its cause."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "Error")
            text = redact(f"AWS {exc.operation_name} failed: {code}: {error.get('Message', '')}")
            raise ServiceError(text.rstrip(": "), operation=exc.operation_name, code=code) from exc
        except BotoCoreError as exc:
            text = redact(f"AWS call failed: {type(exc).__name__}: {exc}")
            raise ServiceError(text, code=type(exc).__name__) from exc

    return call


def conflict_item(exc: Exception) -> dict[str, Any] | None:
    """The item as it was when a DynamoDB write's condition failed (None if there was none);
    any other error is raised again."""
    from botocore.exceptions import ClientError

    if not (
        isinstance(exc, ClientError)
        and exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
    ):
        raise exc
    return dict(exc.response.get("Item") or {}) or None  # type: ignore[call-overload]


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]


def sqs() -> SQSClient:
    return client("sqs")  # type: ignore[no-any-return]


def reset_clients() -> None:
    """Forget every client (tests switch endpoints and credentials between cases)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None  # a new one reads the environment's credentials and region again
