"""Adapter over the CloudWatch metrics the overview and the dashboard read: the age of each
queue's oldest message (published by SQS), and the jobs that succeeded, failed and were
retried per time bucket (published by the workers). Its public calls raise `ServiceError` for
a failed AWS call (an operator without `cloudwatch:GetMetricData` gets `AccessDenied`).

- SQS has no queue attribute for the age of its oldest message; AWS publishes it as
  `AWS/SQS ApproximateAgeOfOldestMessage` (dimension `QueueName`, about once a minute, whole
  seconds).
- The workers write `JobSucceeded`, `JobFailed` and `JobRetried` as Embedded Metric Format
  log lines (`Worker._flush_metrics`, dimensions `job_type` and `service`), which CloudWatch
  Logs turns into metrics: one series per set of dimensions. ListMetrics finds the series,
  GetMetricData sums each, and the sums are added up per bucket here.

One GetMetricData call reads up to 500 series (its own limit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.models import utcnow

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

SQS_NAMESPACE = "AWS/SQS"
OLDEST_AGE = "ApproximateAgeOfOldestMessage"
# How far back a datapoint still counts as the queue's current age: SQS publishes every
# minute, and a datapoint may arrive a minute or two late.
LOOKBACK = timedelta(minutes=5)
PERIOD_SECONDS = 60
QUERIES_PER_CALL = 500  # GetMetricData's own limit
JOB_METRICS = ("JobSucceeded", "JobFailed", "JobRetried")

# (metric name, its dimensions): one series
Series = tuple[str, list[dict[str, str]]]
# metric name -> bucket start -> sum over every series of that name
Sums = dict[str, dict[datetime, float]]


@dataclass(frozen=True)
class Window:
    """Buckets of `period` seconds from `start` (inclusive) to `end` (exclusive)."""

    period: int
    start: datetime
    end: datetime


def _cloudwatch() -> CloudWatchClient:
    return aws.client("cloudwatch")  # type: ignore[no-any-return]


def _datapoints(
    namespace: str, series: list[Series], stat: str, window: Window, **extra: Any
) -> Iterator[tuple[int, datetime, float]]:
    """(index of the series in `series`, timestamp, value) of every datapoint in `window`:
    GetMetricData a call per 500 series, following its NextToken."""
    for first in range(0, len(series), QUERIES_PER_CALL):
        chunk = series[first : first + QUERIES_PER_CALL]
        queries: list[Any] = [
            {
                "Id": f"m{first + i}",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
                    "Period": window.period,
                    "Stat": stat,
                },
            }
            for i, (name, dims) in enumerate(chunk)
        ]
        kwargs: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": window.start,
            "EndTime": window.end,
            **extra,
        }
        while True:
            answer = _cloudwatch().get_metric_data(**kwargs)
            for result in answer.get("MetricDataResults", []):
                index = int(result["Id"][1:])
                for stamp, value in zip(result["Timestamps"], result["Values"], strict=False):
                    yield index, stamp, float(value)
            if not answer.get("NextToken"):
                break
            kwargs["NextToken"] = answer["NextToken"]


@aws.service_errors
def oldest_message_ages(queue_names: list[str], now: datetime | None = None) -> dict[str, float]:
    """Seconds the oldest message of each queue (its SQS name) has waited, from the newest
    datapoint of the last few minutes (Maximum over a minute). A queue without a datapoint
    in that time is left out."""
    names = list(dict.fromkeys(queue_names))
    end = now or utcnow()
    window = Window(PERIOD_SECONDS, end - LOOKBACK, end + timedelta(minutes=1))
    series: list[Series] = [(OLDEST_AGE, [{"Name": "QueueName", "Value": n}]) for n in names]
    newest: dict[str, tuple[datetime, float]] = {}
    points = _datapoints(SQS_NAMESPACE, series, "Maximum", window, ScanBy="TimestampDescending")
    for index, stamp, value in points:
        name = names[index]
        if name not in newest or stamp > newest[name][0]:
            newest[name] = (stamp, value)
    return {name: value for name, (_, value) in newest.items()}


@aws.service_errors
def job_series(namespace: str, metrics: tuple[str, ...] = JOB_METRICS) -> list[Series]:
    """Every series of `metrics` in the namespace (one per job type and service)."""
    cloudwatch: Any = _cloudwatch()
    found: dict[str, Series] = {}  # once each (moto lists a series per datapoint)
    for name in metrics:
        pages = cloudwatch.get_paginator("list_metrics").paginate(
            Namespace=namespace, MetricName=name
        )
        for page in pages:
            for metric in page["Metrics"]:
                dimensions = sorted(metric.get("Dimensions", []), key=lambda d: d["Name"])
                found[json.dumps([name, dimensions])] = (name, dimensions)
    return list(found.values())


@aws.service_errors
def sums(namespace: str, found: list[Series], window: Window) -> Sums:
    """The sum of each metric per bucket of `window`, over all of its `found` series."""
    totals: Sums = {name: {} for name, _ in found}
    for index, stamp, value in _datapoints(namespace, found, "Sum", window):
        name, bucket = found[index][0], stamp.astimezone(UTC)
        totals[name][bucket] = totals[name].get(bucket, 0.0) + value
    return totals
