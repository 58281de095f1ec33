"""What moto's in-process mode leaves out: botocore's HTTP stack (urllib3, TLS, the socket).

In-process moto answers at botocore's `before-send` event, so `Endpoint._send` (urllib3's
connection pool, TLS encryption of the request, the socket writes and reads, TLS decryption,
reading the body) never runs, though on Lambda it runs for every AWS call. Here moto's backends
run in a child process behind a small HTTP/1.1 server on 127.0.0.1 (each request handed to
moto's WSGI app), over TLS with a certificate from a trustme CA made for the run (botocore
verifies it through `AWS_CA_BUNDLE`, as it verifies AWS's); jobkit's clients are pointed at
it with `AWS_ENDPOINT_URL`. Not moto's own server: werkzeug's closes every connection after
one response, so each call would pay a TCP connect and a TLS handshake, which a warm Lambda
container, keeping its connection alive, does not. The handshakes here happen in the warm-up
and are counted.

`send_timer` times `Endpoint._send` plus reading the response body, in the calling thread's CPU
time (`time.thread_time`): the server is another process, its CPU is not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LAUNCHER = r"""
import json, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client

app = DomainDispatcherApplication(create_backend_app)
SKIP = {"content-length", "transfer-encoding", "connection"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: werkzeug's own server closes every connection
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = Client(app).open(
            self.path, method=self.command, headers=list(self.headers.items()), data=body
        )
        data = answer.get_data()
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in SKIP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(json.dumps({"port": server.server_address[1]}), flush=True)
sys.stdin.read()
"""


@contextmanager
def tls_moto_server() -> Iterator[tuple[str, str]]:
    """Moto behind TLS on a free loopback port, in a child process: yields its https URL and
    the CA bundle that verifies it (see `pointed_at`)."""
    import trustme

    with tempfile.TemporaryDirectory(prefix="jobkit-bench-tls-") as folder:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        cert, key, bundle = (Path(folder) / name for name in ("cert.pem", "key.pem", "ca.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        ca.cert_pem.write_to_path(str(bundle))
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(cert), str(key)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            port = json.loads(process.stdout.readline())["port"]
            yield f"https://127.0.0.1:{port}", str(bundle)
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def pointed_at(url: str, bundle: str) -> Iterator[None]:
    """Clients made in this block (boto3's, jobkit's) go to `url` and verify it with
    `bundle`: `AWS_ENDPOINT_URL` and `AWS_CA_BUNDLE`, set for the block only."""
    saved = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE")}
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ["AWS_CA_BUNDLE"] = bundle
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class SendTimer:
    """CPU seconds (this thread) inside botocore's HTTP send path, and how often."""

    seconds: float = 0.0
    sends: int = 0
    connections: int = 0  # new pooled connections (each a TCP connect + TLS handshake)
    total_sends: int = 0  # every send since the patch, resets included

    def reset(self) -> None:
        self.seconds = 0.0
        self.sends = 0


@contextmanager
def send_timer() -> Iterator[SendTimer]:
    """Patch `botocore.endpoint.Endpoint._send` (and count urllib3's new connections)."""
    from botocore.endpoint import Endpoint
    from urllib3.connectionpool import HTTPSConnectionPool

    timer = SendTimer()
    clock = time.thread_time
    send = Endpoint._send  # type: ignore[attr-defined]
    new_conn = HTTPSConnectionPool._new_conn

    def timed_send(self: Any, request: Any) -> Any:
        start = clock()
        try:
            response = send(self, request)
            _ = response.content  # the body is read later otherwise; it is part of the send
            return response
        finally:
            timer.seconds += clock() - start
            timer.sends += 1
            timer.total_sends += 1

    def counted_conn(self: Any) -> Any:
        timer.connections += 1
        return new_conn(self)

    Endpoint._send = timed_send  # type: ignore[attr-defined]
    HTTPSConnectionPool._new_conn = counted_conn  # type: ignore[method-assign]
    try:
        yield timer
    finally:
        Endpoint._send = send  # type: ignore[attr-defined]
        HTTPSConnectionPool._new_conn = new_conn  # type: ignore[method-assign]
