"""The SQS event source mapping, run locally: a poller per mapping, a process per container.

Hand-written: moto stores event source mappings but can only run a function in Docker, and no
library polls SQS the way Lambda's pollers do. This one keeps the mapping's contract:

- `BatchSize` and `MaximumBatchingWindowInSeconds`: records are collected until the batch is
  full or the window (opened by the first record) closes.
- `ScalingConfig.MaximumConcurrency`: at most that many batches in flight, each in its own
  container (a `host.py` process, `esm_container.py`); the poller does not receive while all
  are busy, so waiting messages stay visible instead of ageing in flight.
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

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobkit_tools.local.esm_container import (
    ENABLED_CHECK_S,
    Container,
    ContainerError,
    LogWriter,
    MappingState,
    Outcome,
)
from jobkit_tools.local.stack import FunctionSpec, QueueMappingSpec, client
from jobkit_tools.sqs_event import to_record

log = logging.getLogger("jobkit.local")

INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit; `init_timeout` below stretches it on slow CI
RECEIVE_WAIT_S = 1  # short long-polls, so stopping never waits on a 20 s receive
# How often a poller looks whether its mapping was disabled (a paused queue) or enabled.
DEFAULT_MAX_CONCURRENCY = 5  # a mapping without ScalingConfig; AWS would go up to 1,000


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
        self._state = MappingState(endpoint_url, mapping.uuid, function.logical_id)
        self.paused = threading.Event()  # set while the poller holds off: its mapping disabled
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
            if not self._is_enabled():  # paused (`jobkit queues pause`): receive nothing
                self.paused.set()
                self._stopping.wait(ENABLED_CHECK_S)
                continue
            self.paused.clear()
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

    def _is_enabled(self) -> bool:
        return self._state.enabled()

    def _collect(self) -> list[dict[str, Any]]:
        """One batch: up to BatchSize records, or what arrived before the window closed."""
        size = self.mapping.batch_size
        window = self.mapping.batching_window
        messages: list[dict[str, Any]] = []
        window_closes: float | None = None
        while len(messages) < size and not self._stopping.is_set() and self._is_enabled():
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
