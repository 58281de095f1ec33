"""Per-partner rate limits: a token bucket in DynamoDB (an adapter: boto3).

One item per bucket (`bucket` = the platform): `tokens`, `at_ms` (the moment they were
counted) and `seq`, a write counter. Taking a token reads the item, refills it for the time
passed (`rate` a second, at most `burst`) and writes it back on the condition that nobody
wrote since (`seq` unchanged); a lost race reads again. Two requests a delivery. Idle
buckets expire (`expires_at`, TTL): a missing bucket is a full one.
"""

from __future__ import annotations

import time
from typing import Any

from jobkit import aws

_RACES = 5


class RateLimiter:
    def __init__(self, table: str, clock: Any = time.time) -> None:
        self.table = table
        self._clock = clock

    def acquire(self, bucket: str, rate: float, burst: int) -> float | None:
        """Take a token: None when there was one, else the seconds until there is."""
        ddb = aws.dynamodb()
        for _ in range(_RACES):
            now_ms = int(self._clock() * 1000)
            item = ddb.get_item(
                TableName=self.table, Key={"bucket": {"S": bucket}}, ConsistentRead=True
            ).get("Item")
            if item is None:
                tokens, seq = float(burst), None
            else:
                seq = int(item["seq"]["N"])
                last_ms = int(item["at_ms"]["N"])
                elapsed = max(now_ms - last_ms, 0) / 1000
                tokens = min(float(burst), float(item["tokens"]["N"]) + elapsed * rate)
            if tokens < 1:
                return (1 - tokens) / rate
            values: dict[str, Any] = {
                ":tokens": {"N": repr(tokens - 1)},
                ":now": {"N": str(now_ms)},
                ":expires": {"N": str(now_ms // 1000 + 86_400)},
                ":next": {"N": str((seq or 0) + 1)},
            }
            if seq is None:
                condition = "attribute_not_exists(#b)"
            else:
                condition = "seq = :seq OR attribute_not_exists(#b)"
                values[":seq"] = {"N": str(seq)}
            try:
                ddb.update_item(
                    TableName=self.table,
                    Key={"bucket": {"S": bucket}},
                    UpdateExpression=(
                        "SET tokens = :tokens, at_ms = :now, seq = :next, expires_at = :expires"
                    ),
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ExpressionAttributeNames={"#b": "bucket"},
                )
                return None
            except ddb.exceptions.ConditionalCheckFailedException:
                continue  # another delivery took a token meanwhile: count again
        # Lost every race: the bucket is busy; come back after about one token's time.
        return 1 / rate
