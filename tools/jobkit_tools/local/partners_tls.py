"""The HTTPS server under each of the local stack's partner endpoints (`partners.py`).

A threaded `http.server` on a free loopback port that does each TLS handshake in the
request's own thread (a client that stalls or refuses the certificate holds up no one else),
counts the TLS connections it accepted, and can drop every open connection at once, so that
`server_close` (which joins them) returns promptly.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANDSHAKE_TIMEOUT = 5.0


class TlsServer(ThreadingHTTPServer):
    """A threaded HTTPS server on 127.0.0.1 (see the module docstring)."""

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
        self.connections = 0  # TLS connections accepted (handshake done) since the start
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
            with self._lock:
                self.connections += 1
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
