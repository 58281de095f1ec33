"""The template's HTTP APIs (AWS::Serverless::HttpApi), served on 127.0.0.1 by the local stack.

Hand-written, on the standard library's ThreadingHTTPServer: nothing maintained emulates API
Gateway's IAM authorization locally (moto stores an HTTP API and never serves it; `sam local
start-api` needs Docker and skips authorization). Each request goes the way API Gateway takes
it: its route is found among the template's HttpApi events (404 otherwise); an IAM route checks
the SigV4 signature against the local stack's credentials (`http_api_auth`, 403 otherwise);
the request becomes a payload 2.0 event (`http_api_event`) and the route's function runs it in
one of its warm containers (`esm_container`, the function's own environment); its answer is
the response. `serve_http_apis` starts one server per API and points the stack outputs that
name the API (`https://${JobsApi}.execute-api...`) at it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from botocore.credentials import Credentials

from jobkit_tools.local.esm_container import Container, ContainerError, LogWriter
from jobkit_tools.local.http_api_auth import SignatureError, Signed, verify
from jobkit_tools.local.http_api_event import (
    Answer,
    Request,
    Route,
    answer_of,
    http_api_routes,
    message,
    payload_event,
)
from jobkit_tools.local.stack import DUMMY_CREDENTIALS, REGION, Deployment, FunctionSpec

log = logging.getLogger("jobkit.local")

CONTAINERS_PER_FUNCTION = 4  # concurrent requests a function serves; more wait their turn
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
LOCAL_CREDENTIALS = Credentials(
    DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
    DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
)


class _Containers:
    """Up to `size` warm containers of one function, started on demand and reused."""

    def __init__(
        self, spec: FunctionSpec, endpoint_url: str, write_log: LogWriter, init_timeout: float
    ) -> None:
        self.spec, self.endpoint_url, self.write_log = spec, endpoint_url, write_log
        self.init_timeout = init_timeout
        self._idle: queue.LifoQueue[Container] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(CONTAINERS_PER_FUNCTION)
        self._all: list[Container] = []
        self._lock = threading.Lock()
        self._started = 0

    def invoke(self, event: dict[str, object]) -> Answer:
        with self._slots:
            container = self._take()
            if container is None:
                return message(500, "Internal Server Error")
            outcome = container.invoke(event, float(self.spec.timeout))
            if container.alive:
                self._idle.put(container)
        if outcome.status == "ok":
            return answer_of(outcome.result)
        if outcome.status == "timeout":
            return message(503, "Service Unavailable")
        return message(500, "Internal Server Error")

    def _take(self) -> Container | None:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            self._started += 1
            index = self._started
        container = Container(self.spec, self.endpoint_url, self.write_log, index)
        with self._lock:
            self._all.append(container)
        try:
            container.wait_ready(self.init_timeout)
        except ContainerError as error:
            self.write_log(container.label, f"[local] {error}")
            return None
        return container

    def close(self) -> None:
        with self._lock:
            containers, self._all = self._all, []
        for container in containers:
            container.close()


class HttpApiServer:
    """One HTTP API on 127.0.0.1: its routes, their functions' containers, IAM auth."""

    def __init__(
        self,
        api: str,
        routes: list[Route],
        functions: dict[str, FunctionSpec],
        endpoint_url: str,
        write_log: LogWriter,
        init_timeout: float = 10.0,
    ) -> None:
        self.api = api
        self.routes = routes
        self._containers = {
            route.function: _Containers(
                functions[route.function], endpoint_url, write_log, init_timeout
            )
            for route in routes
        }
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, port: int = 0) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self.handle))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for containers in self._containers.values():
            containers.close()

    def handle(self, request: Request) -> Answer:
        """API Gateway's way with one request: route, authorize, invoke."""
        for route in self.routes:
            parameters = route.match(request.method, request.raw_path)
            if parameters is not None:
                break
        else:
            return message(404, "Not Found")
        access_key = None
        if route.iam:
            signed = Signed(
                request.method,
                request.host,
                request.raw_path,
                request.raw_query,
                {name.lower(): value for name, value in request.headers},
                request.body,
            )
            try:
                access_key = verify(signed, LOCAL_CREDENTIALS, REGION)
            except SignatureError as error:
                return message(403, str(error))
        event = payload_event(request, route, parameters, access_key)
        return self._containers[route.function].invoke(event)


def _handler_class(handle: Callable[[Request], Answer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(message(413, "Request Entity Too Large"))
                return
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            request = Request(
                method=self.command,
                raw_path=path,
                raw_query=query,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                host=self.headers.get("Host", ""),
            )
            self._send(handle(request))

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers:
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        def __getattr__(self, name: str) -> Callable[[], None]:
            # every method (do_GET, do_POST, ...) goes to the routes, as on API Gateway
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http api: " + format, *args)

    return Handler


def serve_http_apis(
    template: Path, deployment: Deployment, write_log: LogWriter, init_timeout: float
) -> list[HttpApiServer]:
    """Start a server per HTTP API of the template whose functions run here, and point the
    outputs that name an API at its local URL."""
    functions = {f.logical_id: f for f in deployment.functions}
    by_api: dict[str, list[Route]] = {}
    for route in http_api_routes(template):
        if route.function in functions:
            by_api.setdefault(route.api, []).append(route)
    servers = []
    for api, routes in sorted(by_api.items()):
        server = HttpApiServer(
            api, routes, functions, deployment.endpoint_url, write_log, init_timeout
        )
        servers.append(server)
        url = server.start()
        for key, value in deployment.outputs.items():
            if "${" + api + "}" in value:
                deployment.outputs[key] = url
        log.debug("local stack: HTTP API %s at %s", api, url)
    return servers
