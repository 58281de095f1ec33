"""EventBridge Scheduler, run locally: fire the schedules stored in moto the way Scheduler does.

Moto stores schedules (`CreateSchedule`, `ListSchedules`, ...) but never fires them. The
`ScheduleFirer` (a thread of the local stack) looks at them every `interval` seconds and fires
the due ones, keeping Scheduler's contract as far as jobkit relies on it:

- Expressions: `at(yyyy-mm-ddThh:mm:ss)`, `rate(N minute|minutes|hour|hours|day|days)` and
  `cron(min hour day-of-month month day-of-week year)`, each in `ScheduleExpressionTimezone`
  (default UTC), within `StartDate`/`EndDate`; `State: DISABLED` never fires.
- The target: an SQS queue gets the target's `Input` as the message body (`MessageGroupId`
  from `SqsParameters`); the context attributes `<aws.scheduler.scheduled-time>`,
  `<aws.scheduler.execution-id>`, `<aws.scheduler.schedule-arn>` and
  `<aws.scheduler.attempt-number>` in `Input` are replaced. A failed send goes to the target's
  `DeadLetterConfig` queue (with Scheduler's error attributes), or to the log.
- A one-time schedule fires once; with `ActionAfterCompletion: DELETE` it is deleted after.
- Scheduler fires about a minute late at worst: each occurrence fires at a uniformly random
  moment in [due, due + `window_seconds`] (0 fires at once, for tests).

Not modelled: other target types (logged once, skipped), `RetryPolicy` beyond botocore's own
retries, a schedule's own `FlexibleTimeWindow` (the firer's window stands for it), catching up
on occurrences missed while the firer was not looking (only the latest one fires).

Expressions are read by `jobkit.expressions` (the same code validates them up front).
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jobkit import aws
from jobkit.errors import InvalidScheduleError
from jobkit.expressions import Expression, Rate, iso_utc, parse_expression

log = logging.getLogger("jobkit.local")

DEFAULT_WINDOW_S = 60.0
DEFAULT_INTERVAL_S = 0.5
_EPSILON = timedelta(microseconds=1)


def _as_utc(value: Any) -> datetime | None:
    """A boto3 timestamp (datetime, or epoch seconds) -> aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


@dataclass
class _Tracked:
    """What the firer remembers of one schedule (keyed by ARN, creation, expression)."""

    expression: Expression | None
    last: datetime  # the last occurrence fired, or where counting starts
    due: datetime | None = None  # the pending occurrence
    fire_at: datetime | None = None  # when it fires (due + a random part of the window)
    done: bool = False


class ScheduleFirer:
    """Fires moto's Scheduler schedules; `start()`/`stop()` run `tick()` in a thread."""

    def __init__(
        self,
        endpoint_url: str | None,
        *,
        window_seconds: float = DEFAULT_WINDOW_S,
        interval: float = DEFAULT_INTERVAL_S,
        now: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.window_seconds = window_seconds
        self.interval = interval
        self.now = now or (lambda: datetime.now(UTC))
        self.rng = rng or random.Random()
        self.log = logger or log
        # No endpoint: the process's own clients (moto's mock_aws, as jobkit.testing uses it).
        # The local stack's module is imported only then: it loads samtranslator.
        make: Callable[[str], Any] = aws.client
        if endpoint_url:
            from jobkit_tools.local.stack import client

            make = lambda name: client(name, endpoint_url)  # noqa: E731
        self.scheduler, self.sqs = make("scheduler"), make("sqs")
        self.fired = 0
        self._tracked: dict[tuple[str, str, str, str], _Tracked] = {}
        self._details: dict[str, tuple[Any, dict[str, Any]]] = {}  # arn -> (modified, schedule)
        self._queue_urls: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # Thread --------------------------------------------------------------------------------------

    def start(self) -> ScheduleFirer:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="jobkit-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # the firer outlives a bad tick (moto restarting, a bug)
                if not self._stopping.is_set():
                    self.log.exception("scheduler: tick failed")
            self._stopping.wait(self.interval)

    def next_fire_at(self) -> datetime | None:
        """When the next occurrence known at the last `tick()` fires (None: nothing pending).

        `jobkit.testing` moves its virtual clock there. A schedule created or enabled since the
        last tick is not known yet; one disabled since may still be counted (an idle look).
        """
        with self._lock:
            pending = [
                t.fire_at for t in self._tracked.values() if not t.done and t.fire_at is not None
            ]
        return min(pending, default=None)

    # One look at the schedules --------------------------------------------------------------------

    def tick(self) -> int:
        """Fire every schedule due now; returns how many fired."""
        with self._lock:
            return self._tick()

    def _tick(self) -> int:
        now = self.now()
        seen: set[str] = set()  # ARNs
        fired = 0
        for page in self.scheduler.get_paginator("list_schedules").paginate():
            for summary in page.get("Schedules", []):
                seen.add(summary["Arn"])
                if summary.get("State", "ENABLED") != "ENABLED":
                    continue  # remembered as it is: enabling it again does not re-fire an at()
                schedule = self._schedule(summary)
                if schedule is not None and self._consider(self._key(schedule), schedule, now):
                    fired += 1
        # Forget deleted schedules (a new one of the same name is a new schedule).
        for key in [k for k in self._tracked if k[0] not in seen]:
            del self._tracked[key]
        for arn in set(self._details) - seen:
            del self._details[arn]
        self.fired += fired
        return fired

    @staticmethod
    def _key(schedule: dict[str, Any]) -> tuple[str, str, str, str]:
        return (
            schedule["Arn"],
            str(schedule.get("CreationDate")),
            schedule.get("ScheduleExpression", ""),
            schedule.get("ScheduleExpressionTimezone") or "UTC",
        )

    def _schedule(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        """The schedule's details, fetched again only when it was modified."""
        arn = summary["Arn"]
        modified = summary.get("LastModificationDate")
        cached = self._details.get(arn)
        if cached is not None and cached[0] == modified:
            return cached[1]
        try:
            schedule: dict[str, Any] = self.scheduler.get_schedule(
                Name=summary["Name"], GroupName=summary.get("GroupName", "default")
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None  # deleted since the listing
            raise
        self._details[arn] = (modified, schedule)
        return schedule

    def _track(self, key: tuple[str, str, str, str], schedule: dict[str, Any]) -> _Tracked:
        tracked = self._tracked.get(key)
        if tracked is not None:
            return tracked
        start = _as_utc(schedule.get("StartDate"))
        created = _as_utc(schedule.get("CreationDate")) or self.now()
        expression: Expression | None = None
        last = created
        try:
            expression = parse_expression(
                schedule["ScheduleExpression"],
                schedule.get("ScheduleExpressionTimezone"),
                anchor=start or created,
            )
        except InvalidScheduleError as error:
            self.log.error("schedule %s skipped: %s", schedule["Name"], error)
        if expression is not None:
            if expression.one_time:
                last = datetime.min.replace(tzinfo=UTC)
            elif start is not None:
                last = start - _EPSILON  # an occurrence at StartDate itself fires
            if isinstance(expression, Rate) and start is None:
                last = created  # the first one is a period after creation
        tracked = _Tracked(expression, last, done=expression is None)
        self._tracked[key] = tracked
        return tracked

    def _consider(
        self, key: tuple[str, str, str, str], schedule: dict[str, Any], now: datetime
    ) -> bool:
        tracked = self._track(key, schedule)
        if tracked.done or tracked.expression is None:
            return False
        expression = tracked.expression
        if tracked.due is None:
            due = expression.next_after(tracked.last)
            end = _as_utc(schedule.get("EndDate"))
            if due is None or (end is not None and due > end):
                tracked.done = True
                return False
            tracked.due = due
            tracked.fire_at = due + timedelta(seconds=self.rng.uniform(0, self.window_seconds))
        assert tracked.due is not None and tracked.fire_at is not None
        if now < tracked.fire_at:
            return False
        due = tracked.due
        if not expression.one_time:  # missed occurrences: only the latest one fires
            end = _as_utc(schedule.get("EndDate"))
            while (following := expression.next_after(due)) is not None and following <= now:
                if end is not None and following > end:
                    break
                due = following
        tracked.last, tracked.due, tracked.fire_at = due, None, None
        fired = self._fire(schedule, due)
        if expression.one_time:
            tracked.done = True
            if schedule.get("ActionAfterCompletion") == "DELETE":
                self._delete(schedule)
        return fired

    def _delete(self, schedule: dict[str, Any]) -> None:
        try:
            self.scheduler.delete_schedule(
                Name=schedule["Name"], GroupName=schedule.get("GroupName", "default")
            )
        except ClientError as error:
            self.log.warning(
                "schedule %s: delete after completion failed: %s", schedule["Name"], error
            )

    # Firing ---------------------------------------------------------------------------------------

    def _fire(self, schedule: dict[str, Any], scheduled: datetime) -> bool:
        target: dict[str, Any] = schedule["Target"]
        arn: str = target["Arn"]
        name, group = schedule["Name"], schedule.get("GroupName", "default")
        if not arn.startswith("arn:aws:sqs:"):
            if (schedule["Arn"], arn) not in self._warned:
                self._warned.add((schedule["Arn"], arn))
                self.log.warning(
                    "schedule %s (group %s): target %s is not emulated locally (SQS only)",
                    name,
                    group,
                    arn,
                )
            return False
        execution_id = str(uuid.uuid4())
        body = substitute(target.get("Input", ""), scheduled, execution_id, schedule["Arn"])
        queue = arn.rsplit(":", 1)[-1]
        try:
            self._send(arn, body, target.get("SqsParameters"))
        except (ClientError, BotoCoreError) as error:
            self._dead_letter(schedule, target, body, execution_id, error)
            return False
        self.log.info("schedule fired: %s, group %s, target queue %s", name, group, queue)
        return True

    def _send(self, queue_arn: str, body: str, sqs_parameters: dict[str, Any] | None) -> None:
        call: dict[str, Any] = {"QueueUrl": self._queue_url(queue_arn), "MessageBody": body}
        if sqs_parameters and sqs_parameters.get("MessageGroupId"):
            call["MessageGroupId"] = sqs_parameters["MessageGroupId"]
        self.sqs.send_message(**call)

    def _queue_url(self, queue_arn: str) -> str:
        url = self._queue_urls.get(queue_arn)
        if url is None:
            url = str(self.sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"])
            self._queue_urls[queue_arn] = url
        return url

    def _dead_letter(
        self,
        schedule: dict[str, Any],
        target: dict[str, Any],
        body: str,
        execution_id: str,
        error: Exception,
    ) -> None:
        code = "SendFailed"
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", code))
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not dlq:
            self.log.error(
                "schedule %s: sending to %s failed (no dead-letter queue): %s",
                schedule["Name"],
                target["Arn"],
                error,
            )
            return
        attributes = {
            "ERROR_CODE": code,
            "ERROR_MESSAGE": str(error)[:1000],
            "EXECUTION_ID": execution_id,
            "RETRY_ATTEMPTS": "0",
            "SCHEDULE_ARN": schedule["Arn"],
            "TARGET_ARN": target["Arn"],
        }
        try:
            self.sqs.send_message(
                QueueUrl=self._queue_url(dlq),
                MessageBody=body,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
        except (ClientError, BotoCoreError) as dlq_error:
            self.log.error(
                "schedule %s: sending to %s failed (%s), and to its dead-letter queue too: %s",
                schedule["Name"],
                target["Arn"],
                error,
                dlq_error,
            )
            return
        self.log.warning(
            "schedule %s: sending to %s failed, dead-lettered to %s: %s",
            schedule["Name"],
            target["Arn"],
            dlq.rsplit(":", 1)[-1],
            code,
        )


def substitute(text: str, scheduled: datetime, execution_id: str, schedule_arn: str) -> str:
    """Replace Scheduler's context attributes in a target's Input."""
    for placeholder, value in (
        ("<aws.scheduler.scheduled-time>", iso_utc(scheduled)),
        ("<aws.scheduler.execution-id>", execution_id),
        ("<aws.scheduler.schedule-arn>", schedule_arn),
        ("<aws.scheduler.attempt-number>", "1"),
    ):
        text = text.replace(placeholder, value)
    return text
