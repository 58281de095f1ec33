"""`LocalStack`: the whole local stack in one process tree, and its clean stop.

It starts moto (a child process), deploys the template into it, starts an SQS poller per event
source mapping (threads) with each function's containers (child processes), a stream poller
per DynamoDB stream mapping (streams.py), and optionally the SES throttling proxy. `jobkit
dev` (`dev.run_dev`) runs it for the CLI; tests use it directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, cast

from jobkit_tools.local.emf import EmfForwarder
from jobkit_tools.local.esm import Kill, QueuePoller
from jobkit_tools.local.faults import SesThrottleProxy
from jobkit_tools.local.http_api import HttpApiServer, serve_http_apis
from jobkit_tools.local.motoserver import SENT_EMAILS_PATH
from jobkit_tools.local.partners import LOCAL_PARTNERS, Behaviour, PartnerEndpoints
from jobkit_tools.local.partners import register as register_partners
from jobkit_tools.local.scheduler import DEFAULT_WINDOW_S, ScheduleFirer
from jobkit_tools.local.stack import (
    DEFAULT_STACK_NAME,
    Deployment,
    LocalStackError,
    MotoServer,
    client,
    deploy,
    verify_ses_identities,
)
from jobkit_tools.local.streams import StreamPoller, read_stream_mappings

log = logging.getLogger("jobkit.local")


class FunctionLogs:
    """Where function output goes: the console (prefixed) or one file per function."""

    def __init__(self, directory: Path | None, stream: TextIO | None = None) -> None:
        self.directory = directory
        self.stream = stream or sys.stderr
        self._files: dict[str, TextIO] = {}
        self._lock = threading.Lock()
        # Sees every line first, as CloudWatch Logs does (`EmfForwarder.offer`: never raises).
        self.forward: Callable[[str], None] | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def write(self, source: str, line: str) -> None:
        """One log line of a container (`source` is `<LogicalId>#<n>`)."""
        if self.forward is not None:
            self.forward(line)
        with self._lock:
            if self.directory is None:
                self.stream.write(f"{source:>18} | {line}\n")
                self.stream.flush()
                return
            function = source.split("#", 1)[0]
            handle = self._files.get(function)
            if handle is None:
                # One file per function and run: a new run starts it afresh.
                handle = (self.directory / f"{function}.log").open("w", encoding="utf-8")
                self._files[function] = handle
            handle.write(f"{source} {line}\n")
            handle.flush()

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


class LocalStack:
    """The local stack as a context manager: start, use (`deployment`, `producer_env`), stop.

    Usable from tests: `with LocalStack(template) as stack: ...` leaves no process behind.
    """

    def __init__(
        self,
        template: Path = Path("template.yaml"),
        parameters: dict[str, str] | None = None,
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        ses_fault_injection: bool = False,
        throttled_calls: int = 1,
        log_dir: Path | None = None,
        log_stream: TextIO | None = None,
        state_file: Path | None = None,
        init_timeout: float = 30.0,
        schedule_window: float = DEFAULT_WINDOW_S,
        partners: dict[str, Behaviour] | None = None,
        function_environment: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.template = template
        self.parameters = dict(parameters or {})
        self.stack_name = stack_name
        self.ses_fault_injection = ses_fault_injection
        self.throttled_calls = throttled_calls
        self.logs = FunctionLogs(log_dir, log_stream)
        self.state_file = state_file
        self.init_timeout = init_timeout
        self.moto = MotoServer(log_dir / "moto.log" if log_dir else None)
        self.proxy: SesThrottleProxy | None = None
        self.pollers: list[QueuePoller] = []
        self.stream_pollers: list[StreamPoller] = []  # one per DynamoDB stream mapping
        # Fires Scheduler schedules up to `schedule_window` s late, as AWS may (0: on time).
        self.schedule_window = schedule_window
        self.scheduler: ScheduleFirer | None = None
        # Partner endpoints on loopback for a syndication function (default: one of each
        # behaviour), registered in moto's SSM and Secrets Manager where it looks for them.
        self.partner_behaviours = dict(LOCAL_PARTNERS if partners is None else partners)
        self.partners: PartnerEndpoints | None = None
        # Extra environment per function (logical id -> variables), over the template's: e.g. a
        # test's own proxy in front of a service (AWS_ENDPOINT_URL_SESV2).
        self.function_environment = dict(function_environment or {})
        self._deployment: Deployment | None = None
        self.http_apis: list[HttpApiServer] = []  # the template's HTTP APIs, on 127.0.0.1
        self.emf: EmfForwarder | None = None  # the functions' EMF lines -> moto's CloudWatch

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise LocalStackError("the local stack is not started")
        return self._deployment

    @property
    def endpoint_url(self) -> str:
        return self.deployment.endpoint_url

    def producer_env(self) -> dict[str, str]:
        """Environment for a producer process (JOBKIT_TABLE, JOBKIT_QUEUES, AWS_ENDPOINT_URL...)."""
        return self.deployment.producer_env()

    def start(self) -> LocalStack:
        """Start moto, deploy, start the pollers; on any failure, stop what was started."""
        try:
            self._start()
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def _start(self) -> None:
        _refuse_second_stack(self.state_file)
        started = time.monotonic()
        endpoint_url = self.moto.start()
        self.emf = EmfForwarder(endpoint_url).start()
        self.logs.forward = self.emf.offer
        deployment = deploy(endpoint_url, self.template, self.parameters, self.stack_name)
        verify_ses_identities(deployment, self.parameters)
        if self.ses_fault_injection:
            self.proxy = SesThrottleProxy(endpoint_url, self.throttled_calls)
            proxy_url = self.proxy.start()
            deployment.functions = [
                dataclasses.replace(
                    f, environment={**f.environment, "AWS_ENDPOINT_URL_SESV2": proxy_url}
                )
                for f in deployment.functions
            ]
        self._start_partners(deployment)
        unknown = set(self.function_environment) - {f.logical_id for f in deployment.functions}
        if unknown:
            raise LocalStackError(f"function_environment: no function {sorted(unknown)} here")
        deployment.functions = [
            dataclasses.replace(
                f, environment={**f.environment, **self.function_environment[f.logical_id]}
            )
            if f.logical_id in self.function_environment
            else f
            for f in deployment.functions
        ]
        self._deployment = deployment
        by_name = {f.name: f for f in deployment.functions}
        for mapping in deployment.mappings:
            poller = QueuePoller(
                by_name[mapping.function_name],
                mapping,
                endpoint_url,
                self.logs.write,
                init_timeout=self.init_timeout,
            )
            self.pollers.append(poller)
            poller.start()
        for stream_mapping in read_stream_mappings(deployment.functions, endpoint_url):
            stream_poller = StreamPoller(
                by_name[stream_mapping.function_name],
                stream_mapping,
                endpoint_url,
                self.logs.write,
                init_timeout=self.init_timeout,
            )
            self.stream_pollers.append(stream_poller)
            stream_poller.start()  # LATEST: from now on
        self.scheduler = ScheduleFirer(endpoint_url, window_seconds=self.schedule_window).start()
        # The template's HTTP APIs on 127.0.0.1 (their URL outputs now name the local server)
        self.http_apis = serve_http_apis(
            self.template, deployment, self.logs.write, self.init_timeout
        )
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            state = {**deployment.describe(), "pid": os.getpid()}
            if self.logs.directory is not None:  # the dashboard shows a job's lines from them
                state["log_dir"] = str(self.logs.directory.resolve())
            self.state_file.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        log.debug("local stack up in %.1f s", time.monotonic() - started)

    def _start_partners(self, deployment: Deployment) -> None:
        """Start the partner endpoints a syndication function would deliver to, put them in its
        registry, let it trust their CA (its certificate checks stay on) and reach them on
        loopback (a deployed function refuses private networks)."""
        paths = {
            f.environment["SYNDICATION_PARTNERS_PATH"]
            for f in deployment.functions
            if f.environment.get("SYNDICATION_PARTNERS_PATH")
        }
        if not paths or not self.partner_behaviours:
            return
        self.partners = PartnerEndpoints(self.partner_behaviours).start()
        environment = self.parameters.get("Environment", "dev")
        for path in sorted(paths):
            register_partners(
                self.partners,
                deployment.endpoint_url,
                parameter_prefix=path,
                secret_prefix=f"jobkit/{environment}/partners",
            )
        deployment.functions = [
            dataclasses.replace(
                f,
                environment={
                    **f.environment,
                    "SYNDICATION_CA_BUNDLE": str(self.partners.ca_bundle),
                    "SYNDICATION_ALLOW_PRIVATE_NETWORKS": "true",
                },
            )
            if f.environment.get("SYNDICATION_PARTNERS_PATH")
            else f
            for f in deployment.functions
        ]

    def kill_functions(self) -> None:
        """Kill every container now; in-flight messages come back after the visibility timeout."""
        for poller in list(self.pollers):
            poller.kill()
        for stream_poller in self.stream_pollers:
            stream_poller.kill()

    def kill_random_worker(
        self, rng: random.Random, function: str | None = None, *, warm_only: bool = False
    ) -> Kill | None:
        """SIGKILL one container that is running an invocation, as a crash or an out-of-memory
        kill would (chaos tests): of `function` (a logical id such as "EmailFunction"; None for
        any), picked with `rng`; with `warm_only`, not in its first invocation (see
        `QueuePoller.kill_one`). Its messages come back after the visibility timeout; the
        poller starts fresh containers. None when no such container was invoking."""
        pollers = [p for p in self.pollers if function in (None, p.function.logical_id)]
        if function is not None and not pollers:
            raise LocalStackError(f"no function {function!r} with a queue in this stack")
        rng.shuffle(pollers)
        for poller in pollers:
            kill = poller.kill_one(rng, warm_only=warm_only)
            if kill is not None:
                return kill
        return None

    def stop(self, graceful: bool = True) -> None:
        """Stop polling, finish (or kill) in-flight batches, then the proxy, then moto."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        for http_api in self.http_apis:
            http_api.stop()
        self.http_apis = []
        if not graceful:
            self.kill_functions()
        for poller in self.pollers:
            poller.stop(timeout=None if graceful else 0)
        self.pollers = []
        for stream_poller in self.stream_pollers:
            stream_poller.stop(timeout=None if graceful else 0)
        self.stream_pollers = []
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.partners is not None:
            self.partners.stop()
            self.partners = None
        if self.emf is not None:
            self.logs.forward = None
            self.emf.stop()
            self.emf = None
        self.moto.stop()
        self.logs.close()
        if self.state_file is not None and self._owns_state_file():
            self.state_file.unlink(missing_ok=True)

    def _owns_state_file(self) -> bool:
        assert self.state_file is not None
        try:
            return bool(json.loads(self.state_file.read_text())["pid"] == os.getpid())
        except (OSError, ValueError, KeyError):
            return False

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(graceful=exc_type is None)

    # What happened -----------------------------------------------------------------------------

    def sent_emails(self) -> list[dict[str, Any]]:
        """The emails moto's SES accepted: id, source, destinations, subject (see motoserver)."""
        with urllib.request.urlopen(f"{self.endpoint_url}{SENT_EMAILS_PATH}", timeout=30) as r:
            return cast(list[dict[str, Any]], json.load(r))

    def queue_depth(self, queue_url: str) -> int:
        """Visible plus in-flight messages of a queue."""
        attributes = client("sqs", self.endpoint_url).get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def _refuse_second_stack(state_file: Path | None) -> None:
    """One local stack per project: a second would overwrite the first one's local.json."""
    if state_file is None or not state_file.exists():
        return
    try:
        pid = int(json.loads(state_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # a stale file from a stack that was killed
    except PermissionError:
        pass
    raise LocalStackError(f"a local stack is already running (pid {pid}, {state_file})")
