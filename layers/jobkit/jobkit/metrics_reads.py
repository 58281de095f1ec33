"""Adapter over CloudWatch metrics that SQS publishes: the age of each queue's oldest message.

SQS has no queue attribute for that age; AWS publishes it as the metric
`AWS/SQS ApproximateAgeOfOldestMessage` (dimension `QueueName`, about once a minute, whole
seconds). One `GetMetricData` call reads it for many queues at once (up to 500 queries a
call). Its public calls raise `ServiceError` for a failed AWS call (an operator without
`cloudwatch:GetMetricData` gets `AccessDenied` there).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.models import utcnow

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

NAMESPACE = "AWS/SQS"
OLDEST_AGE = "ApproximateAgeOfOldestMessage"
# How far back a datapoint still counts as the queue's current age: SQS publishes every
# minute, and a datapoint may arrive a minute or two late.
LOOKBACK = timedelta(minutes=5)
PERIOD_SECONDS = 60
QUERIES_PER_CALL = 500  # GetMetricData's own limit


def _cloudwatch() -> CloudWatchClient:
    return aws.client("cloudwatch")  # type: ignore[no-any-return]


@aws.service_errors
def oldest_message_ages(queue_names: list[str], now: datetime | None = None) -> dict[str, float]:
    """Seconds the oldest message of each queue (its SQS name) has waited, from the newest
    datapoint of the last few minutes (Maximum over a minute). A queue without a datapoint
    in that time is left out. One GetMetricData call per 500 queues."""
    names = list(dict.fromkeys(queue_names))
    end = now or utcnow()
    found: dict[str, float] = {}
    for start in range(0, len(names), QUERIES_PER_CALL):
        chunk = names[start : start + QUERIES_PER_CALL]
        found |= _read(chunk, end - LOOKBACK, end + timedelta(minutes=1))
    return found


def _read(names: list[str], start: datetime, end: datetime) -> dict[str, float]:
    queries: list[Any] = [
        {
            "Id": f"q{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": OLDEST_AGE,
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                },
                "Period": PERIOD_SECONDS,
                "Stat": "Maximum",
            },
        }
        for i, name in enumerate(names)
    ]
    kwargs: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampDescending",
    }
    newest: dict[str, tuple[datetime, float]] = {}
    while True:
        response = _cloudwatch().get_metric_data(**kwargs)
        for result in response.get("MetricDataResults", []):
            name = names[int(result["Id"][1:])]
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=False):
                if name not in newest or stamp > newest[name][0]:
                    newest[name] = (stamp, float(value))
        if not response.get("NextToken"):
            return {name: value for name, (_, value) in newest.items()}
        kwargs["NextToken"] = response["NextToken"]
