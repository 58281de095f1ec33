"""Partner endpoints for the local stack: HTTPS servers on 127.0.0.1 that verify webhooks.

Hand-written (a few lines of stdlib): no library serves fake partners that check Standard
Webhooks signatures and misbehave on purpose, and the syndication worker is tested against
what a partner really answers over real TLS. Each partner is a threaded `http.server` on a
free loopback port, with a certificate from a `trustme` CA made for this `PartnerEndpoints`
alone; the CA's PEM is written to `ca_bundle`, which a worker trusts through its CA-bundle
setting, certificate verification on.

Every request is first checked with `jobkit.webhooks.verify` against the partner's secret
(`secrets[name]`, a fresh `whsec_` secret). One that fails gets 401 with the reason and is
recorded as unverified: no behaviour ever answers 2xx to it. A verified request then gets
what the partner's behaviour says:

- `healthy`: 200 with `{"id": "<partner>-<n>"}`. A redelivery (same `webhook-id`) gets the
  same id back, as a partner that deduplicates on the id would answer.
- `flaky`: the first request for a `webhook-id` gets 503 with `Retry-After: 2`; later ones
  for that id are answered as `healthy`.
- `reject`: 422 with `{"error": "listing rejected: missing square footage"}`.
- `slow`: waits `slow_seconds` (5 s unless told) before answering as `healthy`, so a client
  with a shorter timeout times out. `stop()` ends the wait: the request is then dropped
  unanswered, and `stop()` returns at once.

`received(name)` lists what a partner got (method, path, headers, raw body, whether it
verified, the status it was answered with). `register` puts the partners into moto's SSM
Parameter Store and Secrets Manager the way the syndication worker's registry reads them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme

from jobkit.webhooks import WebhookVerificationError, new_secret, verify
from jobkit_tools.local.stack import client

RETRY_AFTER_SECONDS = 2
REJECT_MESSAGE = "listing rejected: missing square footage"
HANDSHAKE_TIMEOUT = 5.0
IDLE_TIMEOUT = 30.0  # a keep-alive connection left idle this long is closed


class Behaviour(StrEnum):
    """How a partner answers a verified request (see the module docstring)."""

    HEALTHY = "healthy"
    FLAKY = "flaky"
    REJECT = "reject"
    SLOW = "slow"


# The four partners the issue asks the local stack for, named after what they do.
LOCAL_PARTNERS: dict[str, Behaviour] = {b.value: b for b in Behaviour}


@dataclass
class ReceivedRequest:
    """One request a partner got. `headers` has lower-case names; `status` is None until it
    is answered, and stays None for a slow request dropped by `stop()`."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    reason: str | None = None  # why verification failed
    status: int | None = None

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass
class _Partner:
    name: str
    behaviour: Behaviour
    secret: str
    received: list[ReceivedRequest] = field(default_factory=list)
    answered_ids: dict[str, str] = field(default_factory=dict)  # webhook-id -> response id
    deferred_ids: set[str] = field(default_factory=set)  # flaky: ids already given a 503
    server: _TlsServer | None = None
    thread: threading.Thread | None = None


class _TlsServer(ThreadingHTTPServer):
    """A threaded HTTP server that does each TLS handshake in the request's own thread (a
    client that stalls or refuses the certificate holds up no one else) and can drop every
    open connection at once, so that `server_close` (which joins them) returns promptly."""

    daemon_threads = True

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        stopping: threading.Event,
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.context = context
        self.stopping = stopping
        self._connections: set[ssl.SSLSocket] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            if self.stopping.is_set():
                tls.close()
                return
            self._connections.add(tls)
        try:
            tls.settimeout(HANDSHAKE_TIMEOUT)
            tls.do_handshake()
            handler: Any = self.RequestHandlerClass  # typeshed types its server as `Self`
            handler(tls, client_address, self)
        except OSError:  # ssl.SSLError included: an untrusting client, a client gone
            pass
        finally:
            with self._lock:
                self._connections.discard(tls)
            tls.close()

    def drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown: wakes a thread blocked reading it, and leaves
                # the SSL object alone for that thread.
                socket.socket.shutdown(connection, socket.SHUT_RDWR)


class PartnerEndpoints:
    """Partner endpoints on 127.0.0.1, one HTTPS server each; a context manager.

    `partners` maps a partner's name to its behaviour. The secrets exist from the start;
    `url`, `ca_bundle` and the servers from `start()` to `stop()`. The CA bundle is written
    under `directory` (a temporary folder, removed by `stop()`, when not given).
    """

    def __init__(
        self,
        partners: Mapping[str, Behaviour | str],
        *,
        slow_seconds: float = 5.0,
        directory: Path | None = None,
    ) -> None:
        if not partners:
            raise ValueError("PartnerEndpoints needs at least one partner")
        self.slow_seconds = slow_seconds
        self.secrets: dict[str, str] = {name: new_secret() for name in partners}
        self._partners = {
            name: _Partner(name, Behaviour(behaviour), self.secrets[name])
            for name, behaviour in partners.items()
        }
        self._directory = directory
        self._own_directory: Path | None = None
        self._ca_bundle: Path | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._partners)

    def behaviour(self, name: str) -> Behaviour:
        return self._partners[name].behaviour

    @property
    def ca_bundle(self) -> Path:
        """PEM file of the CA that signed every partner's certificate (trust it, verify on)."""
        if self._ca_bundle is None:
            raise RuntimeError("partner endpoints are not started")
        return self._ca_bundle

    def url(self, name: str) -> str:
        """Where to POST partner `name`'s webhooks."""
        server = self._partners[name].server
        if server is None:
            raise RuntimeError("partner endpoints are not started")
        return f"https://127.0.0.1:{server.port}/webhooks"

    def received(self, name: str) -> list[ReceivedRequest]:
        """The requests partner `name` got so far, oldest first."""
        with self._lock:
            return list(self._partners[name].received)

    def start(self) -> Self:
        """Make the CA, write its bundle, and start one server per partner on a free port."""
        if self._ca_bundle is not None:
            raise RuntimeError("partner endpoints are already started")
        self._stopping.clear()
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        directory = self._directory
        if directory is None:
            directory = self._own_directory = Path(tempfile.mkdtemp(prefix="jobkit-partners-"))
        directory.mkdir(parents=True, exist_ok=True)
        bundle = directory / "partners-ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self._ca_bundle = bundle
        try:
            for partner in self._partners.values():
                server = _TlsServer(self._handler_class(partner), context, self._stopping)
                partner.server = server
                partner.thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name=f"partner-{partner.name}",
                    daemon=True,
                )
                partner.thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server, dropping open connections and in-flight slow requests."""
        self._stopping.set()
        servers = [p.server for p in self._partners.values() if p.server is not None]
        for partner in self._partners.values():
            if partner.server is not None and partner.thread is not None:
                partner.server.shutdown()
        for server in servers:
            server.drop_connections()
        for partner in self._partners.values():
            if partner.server is not None:
                partner.server.server_close()  # joins its request threads
            if partner.thread is not None:
                partner.thread.join(timeout=5)
            partner.server = partner.thread = None
        if self._own_directory is not None:
            shutil.rmtree(self._own_directory, ignore_errors=True)
            self._own_directory = None
        self._ca_bundle = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer_verified(self, partner: _Partner, webhook_id: str) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for a verified request, by the partner's behaviour."""
        behaviour = partner.behaviour
        if behaviour is Behaviour.REJECT:
            return 422, {"error": REJECT_MESSAGE}
        with self._lock:
            if behaviour is Behaviour.FLAKY and webhook_id not in partner.deferred_ids:
                partner.deferred_ids.add(webhook_id)
                return 503, {"error": "temporarily unavailable, retry later"}
            if webhook_id not in partner.answered_ids:
                partner.answered_ids[webhook_id] = f"{partner.name}-{len(partner.answered_ids) + 1}"
            return 200, {"id": partner.answered_ids[webhook_id]}

    def _handler_class(self, partner: _Partner) -> type[BaseHTTPRequestHandler]:
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = IDLE_TIMEOUT

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test or the demo reads `received`; request lines are noise

            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    self.send_error(400, "bad Content-Length")
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(headers, body, [partner.secret])
                    request = ReceivedRequest(self.command, self.path, headers, body, True)
                except WebhookVerificationError as error:  # a body not UTF-8 included
                    request = ReceivedRequest(
                        self.command, self.path, headers, body, False, str(error)
                    )
                with endpoints._lock:
                    partner.received.append(request)
                if not request.verified:
                    self._send(request, 401, {"error": request.reason})
                    return
                if partner.behaviour is Behaviour.SLOW and endpoints._stopping.wait(
                    endpoints.slow_seconds
                ):
                    self.close_connection = True  # stopped: dropped unanswered
                    return
                status, answer = endpoints._answer_verified(partner, request.webhook_id)
                extra = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else {}
                self._send(request, status, answer, extra)

            def _send(
                self,
                request: ReceivedRequest,
                status: int,
                answer: dict[str, Any],
                extra: dict[str, str] | None = None,
            ) -> None:
                data = json.dumps(answer).encode()
                with endpoints._lock:
                    request.status = status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def register(
    endpoints: PartnerEndpoints,
    endpoint_url: str,
    *,
    parameter_prefix: str,
    secret_prefix: str,
    rate_per_second: float = 5,
    burst: int = 10,
    timeout_seconds: float = 2,
) -> dict[str, dict[str, Any]]:
    """Put each started partner into moto's SSM and Secrets Manager at `endpoint_url`.

    One secret `<secret_prefix>/<name>` holding `{"secrets": ["whsec_..."]}`, and one String
    parameter `<parameter_prefix>/<name>` holding the registry entry: url, the secret's ARN,
    rate limit, burst, timeout, enabled. Registering again overwrites both. Returns name ->
    the entry written.
    """
    ssm = client("ssm", endpoint_url)
    secretsmanager = client("secretsmanager", endpoint_url)
    entries: dict[str, dict[str, Any]] = {}
    for name in endpoints.names:
        secret_name = f"{secret_prefix.rstrip('/')}/{name}"
        value = json.dumps({"secrets": [endpoints.secrets[name]]})
        try:
            arn = secretsmanager.create_secret(Name=secret_name, SecretString=value)["ARN"]
        except secretsmanager.exceptions.ResourceExistsException:
            arn = secretsmanager.put_secret_value(SecretId=secret_name, SecretString=value)["ARN"]
        entry = {
            "url": endpoints.url(name),
            "secret_arn": arn,
            "rate_per_second": rate_per_second,
            "burst": burst,
            "timeout_seconds": timeout_seconds,
            "enabled": True,
        }
        ssm.put_parameter(
            Name=f"{parameter_prefix.rstrip('/')}/{name}",
            Value=json.dumps(entry),
            Type="String",
            Overwrite=True,
        )
        entries[name] = entry
    return entries
