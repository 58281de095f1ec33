"""Recurring jobs: cron and rate schedules whose every run is one job.

A recurring schedule is an EventBridge Scheduler schedule in the recurring group whose target
is the job type's queue and whose input is a job envelope. Its job id is built from
`<aws.scheduler.scheduled-time>`, which Scheduler fills in at each run: a run that fires twice
(Scheduler delivers at least once) has one id, and the worker's claim runs it once. The job has
no log entry until its first delivery, where the worker adopts it.

When a schedule runs, as Scheduler (and the local firer) does it: a cron at its wall-clock
times in its timezone; a rate every period from its `StartDate`, else from its creation (never
from "now", or the next run would move with every look); a run at `StartDate` itself happens,
none after `EndDate`; and a paused schedule's next run, once resumed, is the first one after
the moment it was resumed (runs missed while paused never happen).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from jobkit.errors import InvalidScheduleError
from jobkit.expressions import Cron, parse_expression
from jobkit.models import SQS_MAX_MESSAGE_BYTES, Envelope

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
# Scheduler refuses a new StartDate earlier than this before now.
START_GRACE = timedelta(minutes=5)
_EPSILON = timedelta(microseconds=1)


class RecurringSchedule(BaseModel):
    """A recurring schedule as Scheduler holds it."""

    model_config = ConfigDict(frozen=True)

    name: str
    expression: str
    timezone: str
    job_type: str
    payload: dict[str, Any]
    state: Literal["ENABLED", "DISABLED"]
    description: str = ""
    start: datetime | None = None  # StartDate: no run before it (UTC)
    end: datetime | None = None  # EndDate: no run after it (UTC)
    next_run: datetime | None = None  # None while paused, after the end, or if none is left

    def job_id(self, scheduled: datetime) -> str:
        """The id of the job that the run at `scheduled` enqueues."""
        return job_id(self.name, scheduled)


def job_id(name: str, scheduled: datetime) -> str:
    return f"{name}@{scheduled.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def normalize(expression: str, timezone: str, now: datetime | None = None) -> str:
    """Validate a cron/rate expression up front; bare six cron fields get `cron(...)`.

    Raises InvalidScheduleError saying what AWS would reject, with an example, and for a cron
    that can never fire again (a day no month has, only past years): AWS would accept it and
    it would silently never run.
    """
    text = " ".join(expression.split())
    if " " in text and not text.startswith(("cron(", "rate(", "at(")):
        text = f"cron({text})"  # bare cron fields (and a 5-field Unix cron gets AWS's error)
    if text.startswith("at("):
        raise InvalidScheduleError(
            f"{expression}: a recurring schedule takes cron(...) or rate(...); "
            "for one run at a set time, enqueue with run_at"
        )
    parsed = parse_expression(text, timezone)
    if isinstance(parsed, Cron) and parsed.next_after(now or datetime.now(UTC)) is None:
        raise InvalidScheduleError(
            f"{text} never fires: no time from now on matches it in {timezone} "
            "(a day that its months do not have, such as 30 February, or only past years)"
        )
    return text


def start_passed(start: datetime | None, now: datetime) -> bool:
    """A start earlier than Scheduler takes for a new schedule (only a kept one may be)."""
    if start is None or start.tzinfo is None or start.utcoffset() is None:
        return False  # none, or naive: check_window says why
    return start < now - START_GRACE


def check_window(
    expression: str,
    timezone: str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    existing: dict[str, Any] | None = None,
) -> tuple[datetime | None, datetime | None]:
    """Validate a schedule's start and end dates; returns them in UTC, to the second.

    Both timezone-aware; the end in the future and after the start; at least one run between
    them (a rate counts from the start, else from `existing`'s creation, else from now); the
    start not in the past (Scheduler refuses a new StartDate more than 5 minutes ago), unless
    it is the one `existing` (GetSchedule's answer) already has, so that declaring the same
    schedule again stays possible once its start has passed. Scheduler keeps whole seconds: a
    start is rounded up and an end down, so no run comes before the start or after the end
    that was asked for.
    """
    for label, value in (("start", start), ("end", end)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise InvalidScheduleError(
                f"{label} must be timezone-aware (e.g. datetime(..., tzinfo=UTC)); "
                "a naive datetime is ambiguous"
            )
    if start is not None:
        start = start.astimezone(UTC)
        if start.microsecond:
            start = start.replace(microsecond=0) + timedelta(seconds=1)
    if end is not None:
        end = end.astimezone(UTC).replace(microsecond=0)
        if end <= now:
            raise InvalidScheduleError(
                f"end {_iso(end)} is in the past: the schedule would never run again"
            )
    if start is not None and end is not None and end <= start:
        raise InvalidScheduleError(f"end {_iso(end)} must be after start {_iso(start)}")
    existing = existing or {}
    kept_start = as_utc(existing.get("StartDate"))
    if start is not None and start_passed(start, now) and start != kept_start:
        raise InvalidScheduleError(
            f"start {_iso(start)} is in the past (Scheduler refuses a start more than "
            "5 minutes ago): give a later one, or none to start now"
        )
    created = as_utc(existing.get("CreationDate")) or now
    if (
        end is not None
        and next_run(expression, timezone, now, created=created, start=start, end=end) is None
    ):
        raise InvalidScheduleError(
            f"{expression} never runs between {_iso(start or now)} and its end {_iso(end)}"
        )
    return start, end


def next_run(
    expression: str,
    timezone: str,
    now: datetime,
    *,
    created: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> datetime | None:
    """A recurring schedule's first run after `now` (None: none left, or a bad expression).

    A rate counts from `start`, else from `created` (else from `now`: a schedule about to be
    made). A run at `start` itself happens; one after `end` does not. The local firer keeps
    the same rules.
    """
    try:
        parsed = parse_expression(expression, timezone, anchor=start or created or now)
    except InvalidScheduleError:
        return None
    after = now if start is None else max(now, start - _EPSILON)
    found = parsed.next_after(after)
    if found is None or (end is not None and found > end):
        return None
    return found


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidScheduleError(
            f"schedule name {name!r}: use 1-64 letters, digits, '-', '_' or '.'"
        )
    return name


def target_input(name: str, job_type: str, payload: dict[str, Any]) -> str:
    """The envelope Scheduler sends at each run, with the run's time filled in by Scheduler."""
    body = json.dumps(
        {
            "v": 1,
            "id": f"{name}@{SCHEDULED_TIME}",
            "type": job_type,
            "payload": payload,
            "enqueued_at": SCHEDULED_TIME,
            "origin": "schedule",
        },
        separators=(",", ":"),
    )
    # What Scheduler will send must be a valid envelope within the SQS size limit.
    sample = body.replace(SCHEDULED_TIME, "2026-01-01T00:00:00Z")
    try:
        Envelope.model_validate_json(sample)
    except ValidationError as exc:
        raise InvalidScheduleError(f"schedule {name}: {exc}") from exc
    if len(sample.encode()) > SQS_MAX_MESSAGE_BYTES:
        raise InvalidScheduleError(f"schedule {name}: the payload is over the SQS size limit")
    return body


def from_definition(definition: dict[str, Any], now: datetime) -> RecurringSchedule:
    """GetSchedule's answer -> RecurringSchedule (job type and payload from its input).

    A definition without `CreationDate` is one just created (its creation is `now`).
    """
    try:
        envelope = json.loads(definition["Target"].get("Input") or "{}")
    except json.JSONDecodeError:
        envelope = {}
    expression = definition["ScheduleExpression"]
    timezone = definition.get("ScheduleExpressionTimezone") or "UTC"
    state = definition.get("State", "ENABLED")
    start, end = as_utc(definition.get("StartDate")), as_utc(definition.get("EndDate"))
    following = None
    if state == "ENABLED":
        created = as_utc(definition.get("CreationDate"))
        following = next_run(expression, timezone, now, created=created, start=start, end=end)
    return RecurringSchedule(
        name=definition["Name"],
        expression=expression,
        timezone=timezone,
        job_type=str(envelope.get("type", "")),
        payload=envelope.get("payload") or {},
        state=state,
        description=definition.get("Description") or "",
        start=start,
        end=end,
        next_run=following,
    )


def as_utc(value: Any) -> datetime | None:
    """A Scheduler timestamp (an aware or naive-UTC datetime, or epoch seconds) -> UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def _iso(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
