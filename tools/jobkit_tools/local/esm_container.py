"""One warm "container" of a function for the local event source mappings (`esm.py`): a
`host.py` process with the function's own environment, and its answer channel.

`Container.invoke` runs the handler once and tells how it ended (`Outcome`): answered, raised,
ran past the function's timeout (the process group is then killed, as Lambda ends a timed-out
sandbox), or crashed (the process died: its answer channel closed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from jobkit_tools.local.stack import FunctionSpec, base_env, client

LogWriter = Callable[[str, str], None]
"""Receives (source, line) for every line a function logs."""


class ContainerError(Exception):
    """A container could not start (init failed or timed out)."""


@dataclass
class Outcome:
    """How one invocation ended, and what the handler returned."""

    status: Literal["ok", "error", "timeout", "crash"]
    result: Any = None
    error: dict[str, Any] | None = None
    duration: float = 0.0


class Container:
    """One warm "container" of a function: a `host.py` process and its answer channel."""

    def __init__(
        self, spec: FunctionSpec, endpoint_url: str, write_log: LogWriter, index: int
    ) -> None:
        self.spec = spec
        self.index = index
        self.label = f"{spec.logical_id}#{index}"
        self.invoking = False  # between sending an invocation and reading its answer
        self.answered = 0  # invocations that returned an answer (0: still on its first)
        self.event: dict[str, Any] | None = None  # the event of the invocation running, if any
        self.chaos_killed = False  # set by `QueuePoller.kill_one`
        self._write_log = write_log
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-P",
                str(Path(__file__).with_name("host.py")),
                "--handler",
                spec.handler,
                "--code-dir",
                str(spec.code_dir),
                *(arg for layer in spec.layer_dirs for arg in ("--layer-dir", str(layer))),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=spec.code_dir,
            env=self.environment(spec, endpoint_url, index),
            start_new_session=True,  # its own process group: a timeout kills all it started
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_answers, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read_logs, args=(self.process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def environment(spec: FunctionSpec, endpoint_url: str, index: int) -> dict[str, str]:
        """The function's own environment, as Lambda builds it, pointed at the local stack."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
            **base_env(endpoint_url),
            **spec.environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{index}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            # What `sam local` sets: Powertools then keeps X-Ray tracing off, as it should here.
            "AWS_SAM_LOCAL": "true",
        }

    def _read_answers(self, stream: TextIO) -> None:
        for line in stream:
            try:
                self._answers.put(json.loads(line))
            except json.JSONDecodeError:
                self._write_log(self.label, f"[local] unreadable answer: {line.rstrip()}")
        self._answers.put(None)  # EOF: the process is gone

    def _read_logs(self, stream: TextIO) -> None:
        for line in stream:
            self._write_log(self.label, line.rstrip("\n"))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Wait for the init phase (imports, module-level clients) to finish."""
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise ContainerError(f"{self.label}: init did not finish in {timeout:.0f} s") from None
        if answer is None or not answer.get("ready"):
            self.kill()
            error = (answer or {}).get("error") or {"errorMessage": "process exited"}
            raise ContainerError(f"{self.label}: init failed: {error.get('errorMessage')}")

    def invoke(self, event: dict[str, Any], timeout: float) -> Outcome:
        """Run the handler once; kill the process if it runs past `timeout` seconds."""
        started = time.monotonic()
        request = {
            "event": event,
            "request_id": str(uuid.uuid4()),
            "deadline_ms": int((time.time() + timeout) * 1000),
            "invoked_function_arn": self.spec.arn,
        }
        assert self.process.stdin is not None
        self.event, self.invoking = event, True
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            answer = self._answers.get(timeout=timeout)
        except (BrokenPipeError, OSError):
            answer = None
        except queue.Empty:
            self.event, self.invoking = None, False
            self.kill()
            self._write_log(
                self.label,
                f"[local] {request['request_id']} Task timed out after {timeout:.2f} seconds",
            )
            return Outcome("timeout", duration=time.monotonic() - started)
        self.event, self.invoking = None, False
        duration = time.monotonic() - started
        if answer is None:
            self.kill()
            code = self.process.returncode
            error = {"errorType": "Runtime.ExitError", "errorMessage": f"exit code {code}"}
            return Outcome("crash", error=error, duration=duration)
        self.answered += 1
        if "error" in answer:
            return Outcome("error", error=answer["error"], duration=duration)
        return Outcome("ok", result=answer.get("result"), duration=duration)

    def kill(self) -> None:
        """SIGKILL the whole process group, as Lambda ends a timed-out sandbox."""
        self.signal_kill()
        self.process.wait()
        self._join_readers()

    def signal_kill(self) -> None:
        """SIGKILL the process group and return at once: the thread that invoked the container
        sees it die (its answer channel closes) and cleans up, as after any crash."""
        # Only while the leader is not reaped: until then its pid (the group id) cannot be reused.
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def close(self, timeout: float = 3.0) -> None:
        """Ask the host to exit (EOF on its stdin); kill it if it does not."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        self.kill()

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(timeout=2)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


ENABLED_CHECK_S = 1.0  # how often a poller looks at its mapping's `Enabled`
log = logging.getLogger("jobkit.local")


class MappingState:
    """An event source mapping's `Enabled` as Lambda has it (`jobkit queues pause` turns it
    off), looked at every ENABLED_CHECK_S: a disabled mapping's poller reads nothing. While
    moto cannot answer (restarting), the last known state holds."""

    def __init__(self, endpoint_url: str, mapping_uuid: str, name: str) -> None:
        self._lambda = client("lambda", endpoint_url)
        self.uuid, self.name = mapping_uuid, name
        self._checked = 0.0  # monotonic time of the last look
        self._enabled = True

    def enabled(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= ENABLED_CHECK_S:
            self._checked = now
            try:
                state = self._lambda.get_event_source_mapping(UUID=self.uuid)["State"]
            except Exception as error:  # moto restarting: keep the last known state
                log.warning("%s: mapping state unknown: %s", self.name, error)
            else:
                self._enabled = state in ("Enabled", "Enabling", "Creating", "Updating")
        return self._enabled
