"""EventBridge Scheduler adapter: one-time schedules that send a job to its queue later, and
recurring (cron/rate) schedules that send one every time they fire."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from jobkit import aws

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


def put_recurring(
    name: str,
    group: str,
    expression: str,
    timezone: str,
    target_arn: str,
    role_arn: str,
    body: str,
    dead_letter_arn: str | None,
    description: str,
    enabled: bool,
) -> dict[str, Any]:
    """Create a recurring schedule, or update the one of that name; returns its definition."""
    from botocore.exceptions import ClientError

    definition: dict[str, Any] = {
        "Name": name,
        "GroupName": group,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Description": description,
        "State": "ENABLED" if enabled else "DISABLED",
        "Target": _target(target_arn, role_arn, body, dead_letter_arn),
    }
    scheduler = aws.client("scheduler")
    try:
        scheduler.create_schedule(**definition)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConflictException":
            raise
        scheduler.update_schedule(**definition)
    return definition


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


def set_state(definition: dict[str, Any], enabled: bool) -> None:
    """Enable or disable a schedule (UpdateSchedule replaces the whole definition)."""
    update = {k: definition[k] for k in _UPDATABLE if definition.get(k) is not None}
    aws.client("scheduler").update_schedule(**update, State="ENABLED" if enabled else "DISABLED")


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
