"""Run the dashboard: on the stack `jobkit_tools.discover` finds, served by waitress (a pure
Python WSGI server: no compiler, no reverse proxy), in the foreground or in a thread."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask

from jobkit import aws
from jobkit.client import Jobkit
from jobkit_tools.dashboard.server import StackUnavailableError, StackView
from jobkit_tools.discover import StackNotFoundError, find, local_state

if TYPE_CHECKING:
    from jobkit_tools.local.local_stack import LocalStack

THREADS = 8
log = logging.getLogger("jobkit.local")


def discovered(stack_name: str | None = None) -> Callable[[], StackView]:
    """A `connect` for `create_app`: the stack the CLI would use (the environment, the local
    stack of this folder's project, then `stack_name` or jobkit-dev on AWS), found on first
    use and again whenever the local stack's state file changes (`jobkit dev` restarted)."""
    lock = threading.Lock()
    found: dict[str, Any] = {}

    def connect() -> StackView:
        state = local_state() if stack_name is None else None
        key = (str(state), _mtime(state))
        with lock:
            if found.get("key") != key:
                try:
                    target = find(stack_name)
                except StackNotFoundError as exc:
                    raise StackUnavailableError(str(exc)) from None
                aws.reset_clients()  # the endpoint may have moved
                local = target.endpoint_url is not None
                log_dir = _log_dir(state) if local and state is not None else None
                view = StackView(Jobkit(target.settings), target.description, local, log_dir)
                found.update(key=key, view=view)
            view = found["view"]
        assert isinstance(view, StackView)
        return view

    return connect


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path is not None else None
    except OSError:
        return None


def _log_dir(state: Path) -> Path | None:
    """Where that local stack writes its function logs (None: to the console)."""
    try:
        recorded = json.loads(state.read_text()).get("log_dir")
    except (OSError, ValueError):
        return None
    return Path(recorded) if recorded else None


@dataclass
class Running:
    """A dashboard served from a thread of this process."""

    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown()
        wasyncore.close_all(self.server._map)
        self.thread.join(10)


def _server(app: Flask, host: str, port: int) -> Any:
    from waitress.server import create_server

    return create_server(app, host=host, port=port, threads=THREADS, ident="jobkit")


def url_of(server: Any) -> str:
    host = server.effective_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.effective_port}/"


def start(app: Flask, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve `app` from a daemon thread (port 0: a free one); `Running.url` is where."""
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    return Running(url_of(server), server, thread)


def serve(app: Flask, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve `app` until interrupted; `ready(url)` once it listens."""
    server = _server(app, host, port)
    ready(url_of(server))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def start_local(stack: LocalStack) -> Running | None:
    """The dashboard of a local stack this process runs (`jobkit dev`, the demo), served from
    a thread on 127.0.0.1: on $JOBKIT_DASHBOARD_PORT, else on a free port. None (and a
    warning) when it cannot be: the template is not a jobkit stack, or the port is taken."""
    from jobkit_tools.cli_base import load_types
    from jobkit_tools.dashboard.app import create_app
    from jobkit_tools.discover import settings_from_outputs

    try:
        settings = settings_from_outputs(stack.deployment.outputs)
    except StackNotFoundError:
        return None  # another template (no job log): nothing to show
    os.environ.update(stack.producer_env())  # this process's clients reach moto
    aws.reset_clients()
    load_types()
    view = StackView(
        Jobkit(settings),
        f"local stack at {stack.endpoint_url}",
        local=True,
        log_dir=stack.logs.directory,
    )
    port = os.environ.get("JOBKIT_DASHBOARD_PORT", "")
    try:
        return start(create_app(lambda: view), port=int(port) if port.isdigit() else 0)
    except OSError as exc:
        log.warning("dashboard not started: port %s: %s", port, exc.strerror or exc)
        return None
