"""EventBridge Scheduler adapter: one-time schedules that send a job to its queue later."""

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


def create_at(
    name: str,
    group: str,
    fire_at: datetime,
    target_arn: str,
    role_arn: str,
    body: str,
    dead_letter_arn: str | None,
) -> None:
    target: dict[str, Any] = {
        "Arn": target_arn,
        "RoleArn": role_arn,
        "Input": body,
        "RetryPolicy": {"MaximumEventAgeInSeconds": 86_400, "MaximumRetryAttempts": 185},
    }
    if dead_letter_arn:
        target["DeadLetterConfig"] = {"Arn": dead_letter_arn}
    aws.client("scheduler").create_schedule(
        Name=name,
        GroupName=group,
        ScheduleExpression=f"at({fire_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S})",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target=target,
    )


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
