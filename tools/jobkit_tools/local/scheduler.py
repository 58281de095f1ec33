"""EventBridge Scheduler, run locally: fire the schedules stored in moto the way Scheduler does.

Moto stores schedules (`CreateSchedule`, `ListSchedules`, ...) but never fires them. The
`ScheduleFirer` (a thread of the local stack) looks at them every `interval` seconds and fires
the due ones, keeping Scheduler's contract as far as jobkit relies on it:

- Expressions: `at(yyyy-mm-ddThh:mm:ss)`, `rate(N minute|minutes|hour|hours|day|days)` and
  `cron(min hour day-of-month month day-of-week year)`, each in `ScheduleExpressionTimezone`
  (default UTC), within `StartDate`/`EndDate` (an occurrence at either one fires); a rate
  counts from `StartDate`, else from `CreationDate`.
- `State: DISABLED` never fires, and an occurrence missed while disabled never fires later:
  once enabled again, a schedule's next occurrence is the first one after the moment the
  firer saw it enabled (its first look after the change). Changing a schedule's expression,
  timezone, start or end counts the same way, from the moment it was seen changed.
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
on occurrences missed while the firer was not looking (only the latest one fires), a schedule
disabled and enabled again between two looks (the firer never saw it disabled).

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
from jobkit.expressions import Expression, iso_utc, parse_expression
from jobkit.recurring import as_utc

log = logging.getLogger("jobkit.local")

DEFAULT_WINDOW_S = 60.0
DEFAULT_INTERVAL_S = 0.5
_EPSILON = timedelta(microseconds=1)


# What makes a schedule's occurrences: creation, expression, timezone, start and end dates.
_Key = tuple[str, str, str, str, str]


@dataclass
class _Tracked:
    """What the firer remembers of one schedule (by ARN), for the definition `key`."""

    key: _Key
    expression: Expression | None
    last: datetime  # the last occurrence fired, or where counting starts
    due: datetime | None = None  # the pending occurrence
    fire_at: datetime | None = None  # when it fires (due + a random part of the window)
    done: bool = False


def _latest_occurrence(
    expression: Expression, due: datetime, now: datetime, end: datetime | None
) -> datetime:
    """Of the occurrences from `due` up to `now` (none past `end`), the latest."""
    while (following := expression.next_after(due)) is not None and following <= now:
        if end is not None and following > end:
            break
        due = following
    return due


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
        # No endpoint: the process's own clients (moto's mock_aws, as jobkit_tools.testing uses it).
        # The local stack's module is imported only then: it loads samtranslator.
        make: Callable[[str], Any] = aws.client
        if endpoint_url:
            from jobkit_tools.local.stack import client

            make = lambda name: client(name, endpoint_url)  # noqa: E731
        self.scheduler, self.sqs = make("scheduler"), make("sqs")
        self.fired = 0
        self._tracked: dict[str, _Tracked] = {}  # by ARN
        self._disabled: set[str] = set()  # ARNs seen DISABLED at the last look
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

        `jobkit_tools.testing` moves its virtual clock there. A schedule created or enabled
        since the last tick is not known yet; one disabled since may still be counted (an idle
        look).
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
                arn = summary["Arn"]
                seen.add(arn)
                if summary.get("State", "ENABLED") != "ENABLED":
                    self._pause(arn)
                    continue
                resumed = arn in self._disabled
                self._disabled.discard(arn)
                schedule = self._schedule(summary)
                if schedule is not None and self._consider(schedule, now, resumed):
                    fired += 1
        # Forget deleted schedules (a new one of the same name is a new schedule).
        for arn in set(self._tracked) - seen:
            del self._tracked[arn]
        for arn in set(self._details) - seen:
            del self._details[arn]
        self._disabled &= seen
        self.fired += fired
        return fired

    def _pause(self, arn: str) -> None:
        """A disabled schedule: its pending occurrence is dropped, and once it is enabled again
        it counts from that moment (as Scheduler does, it never fires what it missed). What
        it already fired is remembered: enabling it again does not re-fire an at()."""
        self._disabled.add(arn)
        tracked = self._tracked.get(arn)
        if tracked is not None:
            tracked.due = tracked.fire_at = None

    @staticmethod
    def _key(schedule: dict[str, Any]) -> _Key:
        return (
            str(schedule.get("CreationDate")),
            schedule.get("ScheduleExpression", ""),
            schedule.get("ScheduleExpressionTimezone") or "UTC",
            str(as_utc(schedule.get("StartDate"))),
            str(as_utc(schedule.get("EndDate"))),
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

    def _track(self, schedule: dict[str, Any], now: datetime) -> _Tracked:
        """What the firer knows of a schedule; a changed definition is counted afresh."""
        key = self._key(schedule)
        known = self._tracked.get(schedule["Arn"])
        if known is not None and known.key == key:
            return known
        start = as_utc(schedule.get("StartDate"))
        created = as_utc(schedule.get("CreationDate")) or self.now()
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
        # Counting starts at the creation (a rate's first occurrence is a period after it), or
        # just before StartDate (an occurrence at StartDate itself fires, none before the
        # creation); StartDate does not apply to a one-time at().
        if expression is not None and expression.one_time:
            last = datetime.min.replace(tzinfo=UTC)
        elif expression is not None and start is not None:
            last = max(start - _EPSILON, created)
        if known is not None:
            # Changed (expression, timezone, start or end) since the last look: what the old
            # definition missed is not owed by the new one.
            last = max(last, now)
        tracked = _Tracked(key, expression, last, done=expression is None)
        self._tracked[schedule["Arn"]] = tracked
        return tracked

    def _consider(self, schedule: dict[str, Any], now: datetime, resumed: bool) -> bool:
        tracked = self._track(schedule, now)
        if resumed and tracked.last < now:
            # Enabled again since the last look: nothing missed meanwhile fires.
            tracked.last, tracked.due, tracked.fire_at = now, None, None
        if tracked.done or tracked.expression is None:
            return False
        expression = tracked.expression
        if not self._plan(tracked, expression, schedule):
            return False
        assert tracked.due is not None and tracked.fire_at is not None
        if now < tracked.fire_at:
            return False
        due = tracked.due
        if not expression.one_time:  # missed occurrences: only the latest one fires
            due = _latest_occurrence(expression, due, now, as_utc(schedule.get("EndDate")))
        tracked.last, tracked.due, tracked.fire_at = due, None, None
        fired = self._fire(schedule, due)
        if expression.one_time:
            tracked.done = True
            if schedule.get("ActionAfterCompletion") == "DELETE":
                self._delete(schedule)
        return fired

    def _plan(self, tracked: _Tracked, expression: Expression, schedule: dict[str, Any]) -> bool:
        """Give the schedule its pending occurrence and firing time, unless it has them; False
        (and done) when no occurrence is left before its EndDate."""
        if tracked.due is not None:
            return True
        due = expression.next_after(tracked.last)
        end = as_utc(schedule.get("EndDate"))
        if due is None or (end is not None and due > end):
            tracked.done = True
            return False
        tracked.due = due
        tracked.fire_at = due + timedelta(seconds=self.rng.uniform(0, self.window_seconds))
        return True

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
