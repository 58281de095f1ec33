"""Writes to the job-log table: a new job's conditional put, and the conditional update every
state change is, retried while an error may pass and counted done when a retry finds its own
first try landed. The job log (`jobkit.store.JobLog`) builds on these."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.items import s
from jobkit.models import Job
from jobkit.store_items import Item, job_from_item, placeholders

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# DynamoDB errors that pass with time.
_PASSING_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
_ASSIGNMENT = re.compile(r"^(\w+) = (:\w+)$")


def retried(exc: Exception) -> bool:
    """Did botocore send the request more than once (an earlier try may have landed)?"""
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


def _applied(
    update: str, values: dict[str, AttributeValueTypeDef], item: dict[str, Any] | None
) -> bool:
    """Is `item` already what the update `SET a = :x, ... [REMOVE b, ...]` makes of it?"""
    if item is None:
        return False
    sets, _, removes = update.removeprefix("SET ").partition(" REMOVE ")
    for assignment in sets.split(", "):
        match = _ASSIGNMENT.match(assignment.strip())
        if match is None or item.get(match.group(1)) != values[match.group(2)]:
            return False
    return not any(name.strip() in item for name in removes.split(",") if name.strip())


def _time_for(pause: float, until: float | None) -> bool:
    """Is there time to wait `pause` s and try again before `until` (monotonic)?"""
    return until is not None and time.monotonic() + pause < until


class JobTable:
    """The job-log table and its writes. Conditional writes make each transition happen once."""

    def __init__(self, table: str) -> None:
        self.table = table

    @aws.service_errors
    def put_new(self, item: Item) -> tuple[bool, Job]:
        """Write a new job unless its id exists: (created, job). The existing job comes back
        from the failed condition itself, so a duplicate costs no extra read."""
        from botocore.exceptions import ClientError

        try:
            aws.dynamodb().put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            existing = aws.conflict_item(exc) or {}
            # botocore retried a put whose first try did land (a timeout, a reset): the item
            # in the way is this very one, so this call did create the job.
            return retried(exc) and existing == item, job_from_item(existing)
        return True, job_from_item(item)

    def _conditional(
        self,
        job_id: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        condition: str,
        *,
        until: float | None = None,
    ) -> bool:
        """One conditional write: True if it held, False if its condition failed. Errors that
        may pass are retried (beyond botocore's own attempts) until `until`, if given."""
        from botocore.exceptions import BotoCoreError, ClientError

        pause, tries = 0.05, 0
        while True:
            tries += 1
            try:
                self._update(job_id, update, values, condition=condition, on_conflict="ALL_OLD")
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ConditionalCheckFailedException":
                    # A retry (botocore's or ours) of a write whose first try landed fails its
                    # condition on its own result: that is a success.
                    again = tries > 1 or retried(exc)
                    return again and _applied(update, values, aws.conflict_item(exc))
                if code not in _PASSING_ERRORS or not _time_for(pause, until):
                    raise
            except BotoCoreError:  # no answer: the network, a timeout
                if not _time_for(pause, until):
                    raise
            else:
                return True
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _update(
        self,
        job_id: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        *,
        condition: str | None = None,
        returns: str = "NONE",
        on_conflict: str = "NONE",
    ) -> Any:
        (update, condition_), names = placeholders(update, condition or "")
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": s(job_id)},
            "UpdateExpression": update,
            "ExpressionAttributeNames": dict(names),  # the cached dict is shared
            "ExpressionAttributeValues": values,
            "ReturnValues": returns,
            "ReturnValuesOnConditionCheckFailure": on_conflict,
        }
        if condition_:
            kwargs["ConditionExpression"] = condition_
        return aws.dynamodb().update_item(**kwargs)
