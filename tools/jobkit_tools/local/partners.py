"""Partner endpoints for the local stack: HTTPS servers on 127.0.0.1 that verify webhooks.

Hand-written (a few lines of stdlib): no library serves fake partners that check Standard
Webhooks signatures and misbehave on purpose, and the syndication worker is tested against
what a partner really answers over real TLS. Each partner is a threaded `http.server` on a
free loopback port, with a certificate from a `trustme` CA made for this `PartnerEndpoints`
alone; the CA's PEM is written to `ca_bundle`, which a worker trusts through its CA-bundle
setting, certificate verification on.

Every request is first checked with `jobkit.webhooks.verify` against the partner's secret
(`secrets[name]`, a fresh `whsec_` secret unless given). One that fails gets 401 with the
reason and is recorded as unverified: no behaviour but `accept` (below) answers 2xx to it.
A verified request then gets what the partner's behaviour says:

- `healthy`: 200 with `{"id": "<partner>-<n>"}`. A redelivery (same `webhook-id`) gets the
  same id back, as a partner that deduplicates on the id would answer.
- `flaky`: the first request for a `webhook-id` gets 503 with `Retry-After: 2`; later ones
  for that id are answered as `healthy`.
- `reject`: 422 with `{"error": "listing rejected: missing square footage"}`.
- `slow`: waits `slow_seconds` (5 s unless told) before answering as `healthy`, so a client
  with a shorter timeout times out. `stop()` ends the wait: the request is then dropped
  unanswered, and `stop()` returns at once.

One behaviour is not among the local stack's partners (`LOCAL_PARTNERS`): `accept` answers
every request 200 with `{"id": "<partner>-<n>"}` at once and checks nothing (its requests are
recorded with `verified` False and no reason). It is a benchmark's load partner: the same
server work whatever a client sends, so a signed delivery and a bare POST compare fairly.

`received(name)` lists what a partner got (method, path, headers, raw body, whether it
verified, the status it was answered with); `stats(name)` counts it, with the TLS connections
the partner accepted. `register` puts the partners into moto's SSM Parameter Store and
Secrets Manager the way the syndication worker's registry reads them. `partners_process.py`
runs the same endpoints in a process of their own.
"""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypedDict

import boto3
import trustme

from jobkit.webhooks import WebhookVerificationError, new_secret, verify
from jobkit_tools.local.partners_tls import TlsServer
from jobkit_tools.local.stack import client

RETRY_AFTER_SECONDS = 2
REJECT_MESSAGE = "listing rejected: missing square footage"
IDLE_TIMEOUT = 30.0  # a keep-alive connection left idle this long is closed


class Behaviour(StrEnum):
    """How a partner answers a verified request (see the module docstring)."""

    HEALTHY = "healthy"
    FLAKY = "flaky"
    REJECT = "reject"
    SLOW = "slow"
    ACCEPT = "accept"  # checks nothing: a benchmark's load partner, not a local stack's


# The four partners the issue asks the local stack for, named after what they do.
LOCAL_PARTNERS: dict[str, Behaviour] = {
    b.value: b for b in (Behaviour.HEALTHY, Behaviour.FLAKY, Behaviour.REJECT, Behaviour.SLOW)
}


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
    server: TlsServer | None = None
    thread: threading.Thread | None = None


class PartnerStats(TypedDict):
    """What one partner saw: requests, of which verified and rejected (401), TLS connections."""

    posts: int
    verified: int
    rejected: int
    connections: int


class Registrable(Protocol):
    """What `register` reads of partner endpoints (`PartnerEndpoints`, `PartnerProcess`)."""

    @property
    def names(self) -> list[str]: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...

    def url(self, name: str) -> str: ...


class PartnerEndpoints:
    """Partner endpoints on 127.0.0.1, one HTTPS server each; a context manager.

    `partners` maps a partner's name to its behaviour. The secrets exist from the start (fresh
    ones, or those `secrets` gives by name); `url`, `ca_bundle` and the servers from `start()`
    to `stop()`. The CA bundle is written under `directory` (a temporary folder, removed by
    `stop()`, when not given).
    """

    def __init__(
        self,
        partners: Mapping[str, Behaviour | str],
        *,
        slow_seconds: float = 5.0,
        directory: Path | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        if not partners:
            raise ValueError("PartnerEndpoints needs at least one partner")
        self.slow_seconds = slow_seconds
        given = secrets or {}
        self.secrets: dict[str, str] = {name: given.get(name) or new_secret() for name in partners}
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

    def stats(self, name: str) -> PartnerStats:
        """What partner `name` saw so far (its connections: while it is started)."""
        received = self.received(name)
        server = self._partners[name].server
        return PartnerStats(
            posts=len(received),
            verified=sum(1 for r in received if r.verified),
            rejected=sum(1 for r in received if r.status == 401),
            connections=server.connections if server is not None else 0,
        )

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
                server = TlsServer(self._handler_class(partner), context, self._stopping)
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
        """Status and JSON body for a verified request (any, to `accept`), by the behaviour."""
        behaviour = partner.behaviour
        if behaviour is Behaviour.REJECT:
            return 422, {"error": REJECT_MESSAGE}
        with self._lock:
            if behaviour is Behaviour.ACCEPT:
                return 200, {"id": f"{partner.name}-{len(partner.received)}"}
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
            disable_nagle_algorithm = True  # an answer's headers and body go out at once

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
                request = _checked(partner, self.command, self.path, headers, body)
                with endpoints._lock:
                    partner.received.append(request)
                if not request.verified and partner.behaviour is not Behaviour.ACCEPT:
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


def _checked(
    partner: _Partner, method: str, path: str, headers: dict[str, str], body: bytes
) -> ReceivedRequest:
    """A request as received, its signature checked (not by an `accept` partner)."""
    if partner.behaviour is Behaviour.ACCEPT:
        return ReceivedRequest(method, path, headers, body, False)
    try:
        verify(headers, body, [partner.secret])
    except WebhookVerificationError as error:  # a body not UTF-8 included
        return ReceivedRequest(method, path, headers, body, False, str(error))
    return ReceivedRequest(method, path, headers, body, True)


def _aws(service: str, endpoint_url: str | None) -> Any:
    """A client on moto's server at `endpoint_url`, or on moto in-process (`mock_aws`)."""
    if endpoint_url is None:
        make: Any = boto3.client  # its overloads want a literal service name
        return make(service)
    return client(service, endpoint_url)


def register(
    endpoints: Registrable,
    endpoint_url: str | None,
    *,
    parameter_prefix: str,
    secret_prefix: str,
    rate_per_second: float = 5,
    burst: int = 10,
    timeout_seconds: float = 2,
    names: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Put each started partner (or those of `names`) into moto's SSM and Secrets Manager at
    `endpoint_url` (None: moto in this process, `mock_aws`).

    One secret `<secret_prefix>/<name>` holding `{"secrets": ["whsec_..."]}`, and one String
    parameter `<parameter_prefix>/<name>` holding the registry entry: url, the secret's ARN,
    rate limit, burst, timeout, enabled. Registering again overwrites both. Returns name ->
    the entry written.
    """
    ssm = _aws("ssm", endpoint_url)
    secretsmanager = _aws("secretsmanager", endpoint_url)
    entries: dict[str, dict[str, Any]] = {}
    for name in endpoints.names if names is None else names:
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
