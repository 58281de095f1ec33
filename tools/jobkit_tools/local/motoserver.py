"""Moto's server in a child process of `jobkit dev`, on a free loopback port.

Run as `python -P motoserver.py` (by path, so it imports only moto). It prints one JSON line,
`{"port": N}`, once it listens, and exits when its stdin closes: a dev process that dies,
even by SIGKILL, takes its emulator with it. A child process rather than a thread keeps the
emulator off the dev process's GIL, so it gets a core of its own while workers run.

It adds one route to moto's: `GET /_jobkit/ses/sent` lists the emails moto's SES accepted,
and the metric AWS publishes for every queue, `AWS/SQS ApproximateAgeOfOldestMessage`
(`publish_queue_ages`).
Moto's own `/moto-api/data.json` cannot serve them here: it serializes every model, and a
Lambda function's model then asks for a Docker client and fails.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

SENT_EMAILS_PATH = "/_jobkit/ses/sent"


def sent_emails() -> list[dict[str, Any]]:
    """Every message moto's SES (v1 and v2 share it) accepted, in every account and region."""
    from moto.ses.models import ses_backends

    sent = []
    for account_id, regions in dict.items(ses_backends):  # dict's own: no lazy backends
        for region, backend in dict.items(regions):
            for message in backend.sent_messages:
                destinations = message.destinations
                if isinstance(destinations, dict):
                    addresses = [a for key in sorted(destinations) for a in destinations[key]]
                else:
                    addresses = list(destinations or [])
                sent.append(
                    {
                        "id": getattr(message, "id", ""),
                        "kind": type(message).__name__,
                        "source": message.source,
                        "destinations": addresses,
                        "subject": getattr(message, "subject", None),
                        "account_id": account_id,
                        "region": region,
                    }
                )
    return sent


class _NoInvocations(dict[str, Any]):
    """A queue's (or a table's) event source mappings as moto sees them: none. Moto would receive a
    queue's messages and invoke its function (in Docker) on every SendMessage while a mapping
    is enabled; the local stack's pollers (esm.py) do that instead, so a mapping's `Enabled`
    stays what it is on AWS: whether the queue is paused (`jobkit queues pause`)."""

    def __setitem__(self, key: str, value: Any) -> None:
        pass


def keep_queues_from_invoking() -> None:
    """Give every moto queue `_NoInvocations` (written by hand: moto has no switch for it)."""
    from moto.sqs import models

    original = models.Queue.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.lambda_event_source_mappings = _NoInvocations()

    models.Queue.__init__ = init  # type: ignore[method-assign]


def keep_tables_from_invoking() -> None:
    """Give every moto table `_NoInvocations`: moto would run a table stream's function (in
    Docker) on every write while a mapping exists, and then drop the stream's records; the
    local stack's stream pollers (streams.py) read the records and invoke it instead."""
    from moto.dynamodb.models import table

    original = table.Table.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.lambda_event_source_mappings = _NoInvocations()

    table.Table.__init__ = init  # type: ignore[method-assign]


_PROVIDERS: list[type] = []
OLDEST_AGE_RECEIVES = 3  # SQS leaves a message out of the age once received this often


def oldest_message_age(messages: list[Any], now_ms: int) -> int:
    """Whole seconds the oldest of `messages` (moto's, not deleted) has waited, as SQS counts
    `ApproximateAgeOfOldestMessage`: from its send, not while it is still delayed, and not
    once it has been received three times; 0 for none."""
    sent = [
        m.sent_timestamp
        for m in messages
        if m.sent_timestamp is not None
        and not m.delayed
        and m.approximate_receive_count < OLDEST_AGE_RECEIVES
    ]
    return max(0, now_ms - min(sent)) // 1000 if sent else 0


def publish_queue_ages() -> None:
    """Let moto's CloudWatch have `AWS/SQS ApproximateAgeOfOldestMessage` (dimension
    `QueueName`) for every queue, as AWS publishes it, so the queue overview and the
    `QueueAgeAlarm`s' metric hold a real age locally.

    Moto's own hook for metrics that AWS publishes: a `CloudWatchMetricProvider` subclass,
    asked by every metric read (GetMetricData, GetMetricStatistics, ListMetrics) for its
    datapoints. It answers one datapoint, now, from the queues' messages at that moment:
    nothing piles up and no thread runs. Written by hand: moto's SQS publishes no metrics.
    """
    from moto.cloudwatch.models import MetricDatum
    from moto.core.common_models import CloudWatchMetricProvider
    from moto.core.utils import unix_time_millis, utcnow
    from moto.sqs.models import sqs_backends

    class QueueAges(CloudWatchMetricProvider):
        @staticmethod
        def get_cloudwatch_metrics(account_id: str, region: str) -> list[MetricDatum]:
            queues = list(sqs_backends[account_id][region].queues.values())
            now, now_ms = utcnow(), int(unix_time_millis())
            return [
                MetricDatum(
                    namespace="AWS/SQS",
                    name="ApproximateAgeOfOldestMessage",
                    value=oldest_message_age(list(queue._messages), now_ms),
                    dimensions=[{"Name": "QueueName", "Value": queue.name}],
                    timestamp=now,
                    unit="Seconds",
                )
                for queue in queues
            ]

    _PROVIDERS.append(QueueAges)  # registered by being a subclass; kept from the collector


def main() -> int:
    """Serve moto on 127.0.0.1 until stdin reaches EOF."""
    keep_queues_from_invoking()
    keep_tables_from_invoking()
    publish_queue_ages()
    # Imported here: the module docstring and `-P` keep this file importable without moto.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        """Moto's handler without one access-log line per request."""

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    host = os.environ.get("JOBKIT_LOCAL_MOTO_HOST", "127.0.0.1")
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == SENT_EMAILS_PATH:
            body = json.dumps(sent_emails()).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return moto_app(environ, start_response)

    server = make_server(host, 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    sys.stdout.write(json.dumps({"port": server.server_address[1]}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # blocks until the parent closes the pipe or dies
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
