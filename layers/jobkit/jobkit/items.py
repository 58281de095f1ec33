"""DynamoDB attribute values: the one place that builds and reads them (the job log and the
apps' tables both use it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def n(value: float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def as_json(value: Any) -> AttributeValueTypeDef:
    return {"S": json.dumps(value, separators=(",", ":"), default=str)}


def plain(value: AttributeValueTypeDef | Any) -> Any:
    """An attribute value as Python: strings, integers, booleans and lists of them."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        return int(value["N"])
    if "BOOL" in value:
        return value["BOOL"]
    if "L" in value:
        return [plain(v) for v in value["L"]]
    return None


def conflict_item(exc: Exception) -> dict[str, Any] | None:
    """The item as it was when a write's condition failed (None if there was none); any other
    error is raised again."""
    from botocore.exceptions import ClientError

    if not (
        isinstance(exc, ClientError)
        and exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
    ):
        raise exc
    return dict(exc.response.get("Item") or {}) or None  # type: ignore[call-overload]
