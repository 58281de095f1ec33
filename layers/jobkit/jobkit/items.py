"""DynamoDB attribute values: the one place that builds and reads them (the job log and the
apps' tables both use it). Plain data: reading a refused write's botocore error
(`conflict_item`) is the AWS adapter's, `jobkit.aws`, re-exported here for the apps' stores."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jobkit.aws import conflict_item as conflict_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def n(value: float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def as_json(value: Any) -> AttributeValueTypeDef:
    return {"S": json.dumps(value, separators=(",", ":"), default=str)}


def plain(value: AttributeValueTypeDef | Any) -> Any:
    """An attribute value as Python: strings, numbers, booleans and lists of them."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        return float(value["N"]) if "." in value["N"] else int(value["N"])
    if "BOOL" in value:
        return value["BOOL"]
    if "L" in value:
        return [plain(v) for v in value["L"]]
    return None
