"""Per-partner rate limits: a token bucket in DynamoDB (an adapter: boto3).

One item per bucket (`bucket` = the platform): `tokens`, `at_ms` (the moment they were
counted) and `seq`, a write counter. Taking a token refills the bucket for the time passed
(`rate` a second, at most `burst`) from the state this container last saw, and writes it on
the condition that nobody wrote since (`seq` unchanged). A lost race gets the item as it is
from the failed condition (`ReturnValuesOnConditionCheckFailure`) and counts again. So a
delivery costs one request while one container has the partner to itself, two when several
take turns; a container that has not seen the bucket assumes it full and missing, and learns
otherwise from its first write. Idle buckets expire (`expires_at`, TTL): a missing bucket is
a full one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jobkit import aws

_RACES = 5


@dataclass(frozen=True)
class _Bucket:
    tokens: float
    at_ms: int
    seq: int


class RateLimiter:
    def __init__(self, table: str, clock: Any = time.time) -> None:
        self.table = table
        self._clock = clock
        self._seen: dict[str, _Bucket] = {}  # what this container last read or wrote

    def acquire(self, bucket: str, rate: float, burst: int) -> float | None:
        """Take a token: None when there was one, else the seconds until there is."""
        ddb = aws.dynamodb()
        for _ in range(_RACES):
            now_ms = int(self._clock() * 1000)
            seen = self._seen.get(bucket)
            seq: int | None = None
            if seen is None:  # never seen, or gone: assume a full bucket with no item
                tokens = float(burst)
            else:
                elapsed = max(now_ms - seen.at_ms, 0) / 1000
                tokens, seq = min(float(burst), seen.tokens + elapsed * rate), seen.seq
                if tokens < 1:
                    # Others only take tokens, so the bucket holds at most this: wait.
                    return (1 - tokens) / rate
            values: dict[str, Any] = {
                ":tokens": {"N": repr(tokens - 1)},
                ":now": {"N": str(now_ms)},
                ":expires": {"N": str(now_ms // 1000 + 86_400)},
                ":next": {"N": str((seq or 0) + 1)},
            }
            call: dict[str, Any] = {
                "TableName": self.table,
                "Key": {"bucket": {"S": bucket}},
                "UpdateExpression": (
                    "SET tokens = :tokens, at_ms = :now, seq = :next, expires_at = :expires"
                ),
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
            if seq is None:
                call["ConditionExpression"] = "attribute_not_exists(#b)"
                call["ExpressionAttributeNames"] = {"#b": "bucket"}
            else:
                call["ConditionExpression"] = "seq = :seq"
                values[":seq"] = {"N": str(seq)}
            try:
                ddb.update_item(**call)
            except ddb.exceptions.ConditionalCheckFailedException as exc:
                item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
                if item is None:
                    self._seen.pop(bucket, None)  # gone (expired): full again
                else:
                    self._seen[bucket] = _Bucket(
                        float(item["tokens"]["N"]), int(item["at_ms"]["N"]), int(item["seq"]["N"])
                    )
                continue  # count again from the bucket as it is
            self._seen[bucket] = _Bucket(tokens - 1, now_ms, (seq or 0) + 1)
            return None
        # Lost every race: the bucket is busy; come back after about one token's time.
        return 1 / rate
