"""EventBridge Scheduler adapter: one-time schedules that send a job to its queue later, and
recurring (cron/rate) schedules that send one every time they fire. A failed AWS call comes
out as a `ServiceError`; a definition Scheduler refuses as an `InvalidScheduleError`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from jobkit import aws
from jobkit.errors import InvalidScheduleError

# Scheduler fires within about a minute of a schedule's time: schedule this much earlier and
# let the worker hide the message for the rest of the wait (the envelope's `not_before`).
FIRE_EARLY_SECONDS = 60


def schedule_name(job_id: str) -> str:
    """A valid, deterministic schedule name for a job id (names allow 64 of [0-9A-Za-z-_.])."""
    return "jobkit-" + hashlib.sha256(job_id.encode()).hexdigest()[:48]


def _target(
    target_arn: str, role_arn: str, body: str, dead_letter_arn: str | None
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "Arn": target_arn,
        "RoleArn": role_arn,
        "Input": body,
        "RetryPolicy": {"MaximumEventAgeInSeconds": 86_400, "MaximumRetryAttempts": 185},
    }
    if dead_letter_arn:
        target["DeadLetterConfig"] = {"Arn": dead_letter_arn}
    return target


@aws.service_errors
def create_at(
    name: str,
    group: str,
    fire_at: datetime,
    target_arn: str,
    role_arn: str,
    body: str,
    dead_letter_arn: str | None,
) -> None:
    aws.client("scheduler").create_schedule(
        Name=name,
        GroupName=group,
        ScheduleExpression=f"at({fire_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S})",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target=_target(target_arn, role_arn, body, dead_letter_arn),
    )


def recurring_definition(
    name: str,
    group: str,
    expression: str,
    timezone: str,
    target_arn: str,
    role_arn: str,
    body: str,
    dead_letter_arn: str | None,
    description: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """A recurring schedule's definition, its state aside. Start and end are part of it:
    UpdateSchedule replaces the whole definition, so leaving them out removes them."""
    definition: dict[str, Any] = {
        "Name": name,
        "GroupName": group,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Description": description,
        "Target": _target(target_arn, role_arn, body, dead_letter_arn),
    }
    if start is not None:
        definition["StartDate"] = start
    if end is not None:
        definition["EndDate"] = end
    return definition


@aws.service_errors
def create_recurring(definition: dict[str, Any], enabled: bool) -> dict[str, Any] | None:
    """Create a recurring schedule; returns its definition (with no `CreationDate`: it was
    created now), or None if one of that name exists (ConflictException)."""
    from botocore.exceptions import ClientError

    state = "ENABLED" if enabled else "DISABLED"
    with _refused(definition["Name"]):
        try:
            aws.client("scheduler").create_schedule(**definition, State=state)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConflictException":
                raise
            return None
    return {**definition, "State": state}


@aws.service_errors
def update_recurring(
    definition: dict[str, Any], enabled: bool | None, existing: dict[str, Any]
) -> dict[str, Any]:
    """Replace `existing` (its GetSchedule answer) with `definition`; `enabled` None keeps its
    state. Returns the definition as it now stands, with the existing `CreationDate`."""
    if enabled is None:
        state = str(existing.get("State") or "ENABLED")
    else:
        state = "ENABLED" if enabled else "DISABLED"
    with _refused(definition["Name"]):
        aws.client("scheduler").update_schedule(**definition, State=state)
    created = existing.get("CreationDate")
    return {**definition, "State": state, **({"CreationDate": created} if created else {})}


@contextmanager
def _refused(name: str) -> Iterator[None]:
    """What Scheduler refuses as invalid (or botocore before it) -> InvalidScheduleError."""
    from botocore.exceptions import ClientError, ParamValidationError

    try:
        yield
    except ParamValidationError as exc:
        reason = " ".join(str(exc).split())
        raise InvalidScheduleError(f"schedule {name}: {reason}") from exc
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":
            raise
        reason = exc.response["Error"].get("Message") or str(exc)
        raise InvalidScheduleError(f"schedule {name}: Scheduler refused it: {reason}") from exc


@aws.service_errors
def get(name: str, group: str) -> dict[str, Any] | None:
    """A schedule's definition (GetSchedule), or None if there is none of that name."""
    from botocore.exceptions import ClientError

    try:
        found: dict[str, Any] = aws.client("scheduler").get_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    return found


@aws.service_errors
def names(group: str) -> list[str]:
    """The names of a group's schedules."""
    pages = aws.client("scheduler").get_paginator("list_schedules").paginate(GroupName=group)
    return sorted(s["Name"] for page in pages for s in page.get("Schedules", []))


_UPDATABLE = (
    "Name",
    "GroupName",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "Description",
    "StartDate",
    "EndDate",
    "KmsKeyArn",
    "Target",
    "ActionAfterCompletion",
)


@aws.service_errors
def set_state(definition: dict[str, Any], enabled: bool) -> None:
    """Enable or disable a schedule. UpdateSchedule replaces the whole definition, so every
    field GetSchedule returned goes back as it was (start and end dates included)."""
    update = {k: definition[k] for k in _UPDATABLE if definition.get(k) is not None}
    with _refused(definition["Name"]):
        aws.client("scheduler").update_schedule(
            **update, State="ENABLED" if enabled else "DISABLED"
        )


@aws.service_errors
def delete(name: str, group: str) -> bool:
    """Delete a schedule; False if it was already gone (it fired, or someone deleted it)."""
    from botocore.exceptions import ClientError

    try:
        aws.client("scheduler").delete_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return False
        raise
    return True
