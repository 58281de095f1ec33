"""Loopback partners for the syndication tests: real HTTPS servers on 127.0.0.1 (a trustme CA)
that verify each request's signature with `jobkit.webhooks.verify` and answer from a script."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import trustme

from jobkit.webhooks import WebhookVerificationError, verify

PARTNERS_PATH = "/jobkit/test/partners"
RATE_TABLE = "jobkit-rate-limits"


PADDING_PIECE = 64 * 1024


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict: JSON; bytes/str: as is; None: {"id": "<partner>-<n>"}
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow partner)
    # A large answer: this many bytes of JSON whitespace after `body`, written piece by piece
    # on a keep-alive (HTTP/1.1) connection; `chunked`: with no Content-Length (chunked).
    padding: int = 0
    chunked: bool = False


class BodyOutcome:
    """How the server's writing of a padded answer ended: `written` (all of it) or `aborted`
    (the client closed the connection first), and how many body bytes went out before."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: str | None = None
        self.sent = 0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None


class _PartnerHandler(BaseHTTPRequestHandler):
    """A partner's request handler: verifies each request, then answers from its script."""

    partner: PartnerServer  # set on the subclass each PartnerServer makes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        partner = self.partner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        try:
            verify(headers, body, partner.secrets)
            verified, error = True, None
        except WebhookVerificationError as exc:
            verified, error = False, str(exc)
        with partner._lock:
            partner.requests.append(Received(self.path, headers, body, verified, error))
            count = len(partner.requests)
            if not verified:
                reply = Reply(401, {"error": error})
            elif partner.script:
                reply = partner.script.pop(0)
            else:
                reply = partner.default
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body if reply.body is not None else {"id": f"{partner.name}-{count}"}
        data = (
            json.dumps(payload).encode()
            if isinstance(payload, dict)
            else payload.encode()
            if isinstance(payload, str)
            else payload
        )
        if reply.padding or reply.chunked:
            self._send_padded(reply, data)
            return
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout)

    def _send_padded(self, reply: Reply, data: bytes) -> None:
        outcome = self.partner.padded = BodyOutcome()
        # HTTP/1.1 and keep-alive: a client that left the rest unread and put the
        # connection back in its pool would leave this writing, not aborted.
        self.protocol_version = "HTTP/1.1"
        self.close_connection = True
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(data) + reply.padding))
            self.send_header("Connection", "keep-alive")
            self.end_headers()
            left = reply.padding
            pieces = [data]
            while pieces:
                for piece in pieces:
                    if reply.chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    else:
                        self.wfile.write(piece)
                    outcome.sent += len(piece)
                size = min(left, PADDING_PIECE)
                left -= size
                pieces = [b" " * size] if size else []
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
            outcome.result = "written"
        except OSError:
            outcome.result = "aborted"
        finally:
            outcome.done.set()


class PartnerServer:
    """One partner endpoint. `script` answers requests in order; then `default` answers."""

    def __init__(
        self,
        name: str,
        ca: trustme.CA,
        secrets: list[str],
        script: list[Reply] | None = None,
        default: Reply | None = None,
        *,
        host: str = "127.0.0.1",
        names: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
    ) -> None:
        """Listens on `host` (an IPv6 address too) with a certificate for `names`."""
        self.name = name
        self.secrets = secrets
        self.script = list(script or [])
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.padded = BodyOutcome()  # the last padded answer's
        self._lock = threading.Lock()
        cert = ca.issue_cert(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
        if ":" in host:

            class IPv6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_class = IPv6Server
        handler = type("Handler", (_PartnerHandler,), {"partner": self})
        self.httpd = server_class((host, 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        return self.url_at(f"[{host}]" if ":" in host else host)

    def url_at(self, host: str) -> str:
        """The endpoint's URL by another name for its address (`localhost`, `[::1]`)."""
        return f"https://{host}:{self.httpd.server_address[1]}/listings"

    def __enter__(self) -> PartnerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}/listings"


def write_ca(ca: trustme.CA, directory: Path, name: str = "partners-ca.pem") -> str:
    path = directory / name
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def put_partner(
    name: str,
    url: str,
    secrets: list[str],
    *,
    rate_per_second: float = 50,
    burst: int = 50,
    timeout_seconds: float = 5,
    enabled: bool = True,
) -> None:
    """Register a partner as an operator would: its secret, then its parameter."""
    secret_name = f"jobkit/test/partners/{name}"
    sm = boto3.client("secretsmanager")
    value = json.dumps({"secrets": secrets})
    try:
        sm.create_secret(Name=secret_name, SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=secret_name, SecretString=value)
    config = {
        "url": url,
        "secret_arn": secret_name,
        "rate_per_second": rate_per_second,
        "burst": burst,
        "timeout_seconds": timeout_seconds,
        "enabled": enabled,
    }
    boto3.client("ssm").put_parameter(
        Name=f"{PARTNERS_PATH}/{name}", Value=json.dumps(config), Type="String", Overwrite=True
    )


def create_rate_table() -> None:
    boto3.client("dynamodb").create_table(
        TableName=RATE_TABLE,
        AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
