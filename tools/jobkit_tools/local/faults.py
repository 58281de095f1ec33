"""SES fault injection over real HTTP: a throttling proxy in front of moto's SES v2.

Hand-written (a few lines of stdlib; no library does exactly this): the email function's
`AWS_ENDPOINT_URL_SESV2` points here, botocore sends its SES v2 calls here, and the proxy
answers `SendEmail` for a `flaky*@...` recipient with HTTP 429 `TooManyRequestsException`,
the way SES throttles, before forwarding everything else to moto unchanged. The worker's code
has no hook for it: what is tested is how it handles a real throttling response.

Which calls fail: the first `throttled_calls` SendEmail *calls* per flaky recipient, every
HTTP attempt of them included. botocore retries a throttled call itself (3 attempts in
standard mode, 5 in legacy, whatever the client's config says) and marks each attempt with
the same `amz-sdk-invocation-id`, so counting calls rather than requests makes "the first job
attempt fails, the second succeeds" exact whatever retry configuration the worker uses. A
request without that header counts as a call of its own.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
THROTTLE_BODY = json.dumps(
    {"__type": "TooManyRequestsException", "message": "Maximum sending rate exceeded."}
).encode()
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}


@dataclass
class FaultStats:
    """What the proxy did, per recipient (addresses stay in this process, never in logs)."""

    throttled_requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    throttled_calls: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    forwarded_sends: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class SesThrottleProxy:
    """An HTTP proxy on 127.0.0.1 that throttles SES v2 SendEmail for chosen recipients."""

    def __init__(
        self, upstream_url: str, throttled_calls: int = 1, local_part_prefix: str = "flaky"
    ) -> None:
        self.upstream = urlsplit(upstream_url)
        self.throttled_calls = throttled_calls
        self.prefix = local_part_prefix.lower()
        self.stats = FaultStats()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ses-proxy", daemon=True
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def should_throttle(self, body: bytes, invocation_id: str | None) -> bool:
        """Decide for one SendEmail request, and count it."""
        try:
            destination = json.loads(body or b"{}").get("Destination", {})
        except (ValueError, AttributeError):
            return False
        recipients = [
            address.lower()
            for key in ("ToAddresses", "CcAddresses", "BccAddresses")
            for address in destination.get(key, [])
            if isinstance(address, str)
        ]
        flaky = [r for r in recipients if r.rsplit("<", 1)[-1].startswith(self.prefix)]
        if not flaky:
            return False
        with self._lock:
            throttle = False
            for recipient in flaky:
                calls = self.stats.throttled_calls[recipient]
                call = invocation_id or f"request-{self.stats.throttled_requests[recipient]}"
                if call in calls or len(calls) < self.throttled_calls:
                    calls.add(call)
                    self.stats.throttled_requests[recipient] += 1
                    throttle = True
            if not throttle:
                for recipient in flaky:
                    self.stats.forwarded_sends[recipient] += 1
            return throttle

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # request lines would carry nothing useful; addresses must not be logged

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if (
                    self.command == "POST"
                    and self.path.split("?")[0] == SEND_EMAIL_PATH
                    and proxy.should_throttle(body, self.headers.get("amz-sdk-invocation-id"))
                ):
                    self._answer(
                        429,
                        {
                            "Content-Type": "application/json",
                            "x-amzn-ErrorType": "TooManyRequestsException",
                            "x-amzn-RequestId": "jobkit-local-throttle",
                        },
                        THROTTLE_BODY,
                    )
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=60
                )
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    headers["Host"] = proxy.upstream.netloc
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self._answer(
                        response.status,
                        {
                            k: v
                            for k, v in response.getheaders()
                            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                        },
                        data,
                    )
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # noqa: N815

        return Handler
