"""Recurring jobs: cron and rate schedules whose every run is one job.

A recurring schedule is an EventBridge Scheduler schedule in the recurring group whose target
is the job type's queue and whose input is a job envelope. Its job id is built from
`<aws.scheduler.scheduled-time>`, which Scheduler fills in at each run: a run that fires twice
(Scheduler delivers at least once) has one id, and the worker's claim runs it once. The job has
no log entry until its first delivery, where the worker adopts it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from jobkit.errors import InvalidScheduleError
from jobkit.expressions import parse_expression
from jobkit.models import SQS_MAX_MESSAGE_BYTES, Envelope

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")


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
    next_run: datetime | None = None  # None while paused

    def job_id(self, scheduled: datetime) -> str:
        """The id of the job that the run at `scheduled` enqueues."""
        return job_id(self.name, scheduled)


def job_id(name: str, scheduled: datetime) -> str:
    return f"{name}@{scheduled.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def normalize(expression: str, timezone: str) -> str:
    """Validate a cron/rate expression up front; bare six cron fields get `cron(...)`.

    Raises InvalidScheduleError saying what AWS would reject, with an example.
    """
    text = " ".join(expression.split())
    if " " in text and not text.startswith(("cron(", "rate(", "at(")):
        text = f"cron({text})"  # bare cron fields (and a 5-field Unix cron gets AWS's error)
    if text.startswith("at("):
        raise InvalidScheduleError(
            f"{expression}: a recurring schedule takes cron(...) or rate(...); "
            "for one run at a set time, enqueue with run_at"
        )
    parse_expression(text, timezone)
    return text


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
    """GetSchedule's answer -> RecurringSchedule (job type and payload from its input)."""
    try:
        envelope = json.loads(definition["Target"].get("Input") or "{}")
    except json.JSONDecodeError:
        envelope = {}
    expression = definition["ScheduleExpression"]
    timezone = definition.get("ScheduleExpressionTimezone") or "UTC"
    state = definition.get("State", "ENABLED")
    next_run = None
    if state == "ENABLED":
        try:
            next_run = parse_expression(expression, timezone, anchor=now).next_after(now)
        except InvalidScheduleError:
            next_run = None
    return RecurringSchedule(
        name=definition["Name"],
        expression=expression,
        timezone=timezone,
        job_type=str(envelope.get("type", "")),
        payload=envelope.get("payload") or {},
        state=state,
        description=definition.get("Description") or "",
        next_run=next_run,
    )
