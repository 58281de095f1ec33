"""The SQS event source mapping, run locally: a poller per mapping, a process per container.

Hand-written: moto stores event source mappings but can only run a function in Docker, and no
library polls SQS the way Lambda's pollers do. This one keeps the mapping's contract:

- `BatchSize` and `MaximumBatchingWindowInSeconds`: records are collected until the batch is
  full or the window (opened by the first record) closes.
- `ScalingConfig.MaximumConcurrency`: at most that many batches in flight, each in its own
  container (a `host.py` process); the poller does not receive while all are busy, so waiting
  messages stay visible instead of ageing in flight.
- `FunctionResponseTypes: [ReportBatchItemFailures]`: the records not listed in
  `batchItemFailures` are deleted (`DeleteMessageBatch`); a handler error, a timeout, a crash
  or an invalid response deletes nothing, and SQS returns the messages after the queue's
  visibility timeout, as on AWS.
- The function's `Timeout`: an invocation that runs longer is killed with its process group
  and the container is replaced by a fresh one on the next batch (a cold start).

For chaos tests, `QueuePoller.kill_one` SIGKILLs a container in the middle of an invocation, as
a crash or an out-of-memory kill would: the invocation ends as a crash (nothing deleted, the
messages come back after the visibility timeout) and the poller goes on with fresh containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from jobkit_tools.local.stack import FunctionSpec, QueueMappingSpec, base_env, client
from jobkit_tools.sqs_event import to_record

log = logging.getLogger("jobkit.local")

INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit; `init_timeout` below stretches it on slow CI
RECEIVE_WAIT_S = 1  # short long-polls, so stopping never waits on a 20 s receive
DEFAULT_MAX_CONCURRENCY = 5  # a mapping without ScalingConfig; AWS would go up to 1,000

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


@dataclass(frozen=True)
class Kill:
    """A container `QueuePoller.kill_one` killed, and the records of the batch it was running."""

    container: str
    records: list[dict[str, Any]]


@dataclass
class MappingStats:
    """Counters of one mapping's poller, for the demo's display and for tests."""

    batches: int = 0
    records: int = 0
    deleted: int = 0
    returned: int = 0  # records left in the queue (failures, errors, timeouts)
    errors: int = 0
    timeouts: int = 0
    crashes: int = 0
    cold_starts: int = 0
    kills: int = 0  # containers killed by `QueuePoller.kill_one`
    kills_mid_invocation: int = 0  # ... whose invocation ended as a crash (it was killed mid-run)
    batch_sizes: list[int] = field(default_factory=list)


def records_to_delete(
    outcome: Outcome, records: list[dict[str, Any]], report_failures: bool
) -> tuple[list[dict[str, Any]], str]:
    """Lambda's rule for which records of a batch are done, and why the rest are not.

    With `ReportBatchItemFailures`, an empty or missing `batchItemFailures` is full success;
    an item without a known `itemIdentifier` makes the whole response invalid (nothing deleted).
    """
    if outcome.status != "ok":
        return [], outcome.status
    if not report_failures:
        return records, ""
    response = outcome.result
    if response is None or (isinstance(response, dict) and not response.get("batchItemFailures")):
        return records, ""
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(failures, list):
        return [], "invalid response (batchItemFailures is not a list)"
    ids = {record["messageId"] for record in records}
    failed = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            return [], f"invalid response (itemIdentifier {identifier!r} is not in the batch)"
        failed.add(identifier)
    return [r for r in records if r["messageId"] not in failed], f"{len(failed)} reported failed"


class QueuePoller:
    """Lambda's SQS poller for one event source mapping, and the containers it invokes."""

    def __init__(
        self,
        function: FunctionSpec,
        mapping: QueueMappingSpec,
        endpoint_url: str,
        write_log: LogWriter,
        init_timeout: float = INIT_TIMEOUT_S,
    ) -> None:
        self.function = function
        self.mapping = mapping
        self.endpoint_url = endpoint_url
        self.concurrency = mapping.maximum_concurrency or DEFAULT_MAX_CONCURRENCY
        self.init_timeout = max(init_timeout, INIT_TIMEOUT_S)
        self.stats = MappingStats()
        self._write_log = write_log
        self._sqs = client("sqs", endpoint_url)
        self._slots = threading.Semaphore(self.concurrency)
        self._idle: list[Container] = []
        self._all: list[Container] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._counter = 0
        self._thread = threading.Thread(
            target=self._poll, name=f"poller-{function.logical_id}", daemon=True
        )
        self._inflight: list[threading.Thread] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop receiving, let in-flight batches finish (each bounded by the function timeout)."""
        self._stopping.set()
        self._thread.join()
        if timeout is None:
            timeout = self.function.timeout + self.init_timeout + 2
        deadline = time.monotonic() + timeout
        for thread in list(self._inflight):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            containers, self._all, self._idle = self._all, [], []
        for container in containers:
            container.close()  # a still-running invocation is killed; its messages come back

    def kill(self) -> None:
        """Stop at once: kill every container (their messages return after the timeout)."""
        self._stopping.set()
        with self._lock:
            containers = list(self._all)
        for container in containers:
            container.kill()

    def kill_one(self, rng: random.Random, *, warm_only: bool = False) -> Kill | None:
        """SIGKILL one container that is running an invocation (picked with `rng`), as a crash or
        an out-of-memory kill would; None when none is. The poller keeps running: the killed
        invocation deletes nothing, so its messages come back after the queue's visibility
        timeout, and the next batch gets a fresh container. `stats.kills_mid_invocation`
        counts the kills that ended an invocation (one may answer just before the signal).

        `warm_only` spares a container's first invocation. That one is mostly warm-up (a
        function creates its clients and loads its templates on first use), and as every kill
        makes a fresh container, kills at random moments would mostly land in warm-ups."""
        with self._lock:
            busy = [
                c
                for c in self._all
                if c.invoking
                and not c.chaos_killed
                and c.alive
                and (c.answered > 0 or not warm_only)
            ]
            if not busy:
                return None
            victim = rng.choice(sorted(busy, key=lambda c: c.index))
            victim.chaos_killed = True
            self.stats.kills += 1
            kill = Kill(victim.label, list((victim.event or {}).get("Records", [])))
        victim.signal_kill()
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        # In the function's log, among its lines: where the kill landed shows there.
        self._write_log(victim.label, f"[local] killed (SIGKILL) by kill_one at {now}")
        return kill

    # Receiving -------------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                messages = self._collect()
            except Exception as error:  # moto restarting, a network blip: try again shortly
                log.warning("%s: receive failed: %s", self.function.logical_id, error)
                messages = []
                self._stopping.wait(1.0)
            if not messages:
                self._slots.release()
                continue
            if self._stopping.is_set():
                self._release(messages)
                self._slots.release()
                break
            thread = threading.Thread(target=self._run, args=(messages,), daemon=True)
            self._inflight = [t for t in self._inflight if t.is_alive()] + [thread]
            thread.start()

    def _collect(self) -> list[dict[str, Any]]:
        """One batch: up to BatchSize records, or what arrived before the window closed."""
        size = self.mapping.batch_size
        window = self.mapping.batching_window
        messages: list[dict[str, Any]] = []
        window_closes: float | None = None
        while len(messages) < size and not self._stopping.is_set():
            # Short receives, so a stop never waits long; the window opens with the first record.
            wait = RECEIVE_WAIT_S
            if window_closes is not None:
                remaining = window_closes - time.monotonic()
                if remaining <= 0:
                    break
                wait = max(1, min(RECEIVE_WAIT_S, round(remaining)))
            received = self._sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=min(10, size - len(messages)),
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if received and window_closes is None:
                if window <= 0:
                    return list(received)
                window_closes = time.monotonic() + window
            messages.extend(received)
        return messages

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Make received-but-not-invoked messages visible again right away (on shutdown)."""
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )

    # Invoking --------------------------------------------------------------------------------

    def _container(self) -> Container:
        """An idle warm container, or a fresh one (a cold start) while under the cap."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                container = self._idle.pop()
                if container.alive:
                    return container
                self._all.remove(container)
            container.kill()  # it died while idle (killed just after its answer): reap it
        with self._lock:
            if self._stopping.is_set():
                raise ContainerError(f"{self.function.logical_id}: stopping")
            self._counter += 1
            container = Container(self.function, self.endpoint_url, self._write_log, self._counter)
            self._all.append(container)
            self.stats.cold_starts += 1
        try:
            container.wait_ready(self.init_timeout)
        except ContainerError:
            with self._lock:
                self._all.remove(container)
            raise
        return container

    def _run(self, messages: list[dict[str, Any]]) -> None:
        try:
            records = [to_record(m, self.mapping.queue_arn) for m in messages]
            try:
                container = self._container()
            except ContainerError as error:
                if self._stopping.is_set():
                    self._release(messages)
                    return
                log.error("%s", error)
                outcome = Outcome("crash", error={"errorMessage": str(error)})
            else:
                outcome = container.invoke({"Records": records}, self.function.timeout)
                with self._lock:
                    alive = container.alive
                    if alive:
                        self._idle.append(container)
                    elif container in self._all:
                        self._all.remove(container)
                    if outcome.status == "crash" and container.chaos_killed:
                        self.stats.kills_mid_invocation += 1
                if not alive:
                    # Reap it: a crash was reaped already, one killed just after its answer not.
                    container.kill()
            done, reason = records_to_delete(
                outcome, records, self.mapping.report_batch_item_failures
            )
            self._delete(done)
            self._count(outcome, len(records), len(done))
            if reason:
                # Reported item failures are routine (retries); errors and timeouts are not.
                log.log(
                    logging.DEBUG if outcome.status == "ok" else logging.WARNING,
                    "%s: batch of %d: %d done, %d back to the queue (%s%s)",
                    self.function.logical_id,
                    len(records),
                    len(done),
                    len(records) - len(done),
                    reason,
                    f": {outcome.error.get('errorType')}: {outcome.error.get('errorMessage')}"
                    if outcome.error
                    else "",
                )
        except Exception:
            log.exception("%s: batch failed in the local runner", self.function.logical_id)
        finally:
            self._slots.release()

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), 10):
            chunk = records[start : start + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)
                ],
            )
            for failed in response.get("Failed", []):
                log.warning(
                    "%s: delete failed: %s", self.function.logical_id, failed.get("Message")
                )

    def _count(self, outcome: Outcome, records: int, deleted: int) -> None:
        with self._lock:
            stats = self.stats
            stats.batches += 1
            stats.records += records
            stats.deleted += deleted
            stats.returned += records - deleted
            stats.batch_sizes.append(records)
            if outcome.status == "error":
                stats.errors += 1
            elif outcome.status == "timeout":
                stats.timeouts += 1
            elif outcome.status == "crash":
                stats.crashes += 1
