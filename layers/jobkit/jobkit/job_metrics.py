"""Adapter over CloudWatch's job metrics: how many jobs succeeded, failed and were retried per
time bucket.

The workers write them as Embedded Metric Format log lines (`Worker._flush_metrics`:
`JobSucceeded`, `JobFailed`, `JobRetried`, dimensions `job_type` and `service`), which
CloudWatch Logs turns into metrics. A metric is one series per set of dimensions, and
GetMetricData sums one series at a time: ListMetrics finds the series (one per job type), one
GetMetricData call reads them all for a window (up to 500 series a call), and the sums are
added up per bucket here. Its public calls raise `ServiceError` for a failed AWS call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobkit import aws

JOB_METRICS = ("JobSucceeded", "JobFailed", "JobRetried")
_QUERIES_PER_CALL = 500  # GetMetricData's limit


@dataclass(frozen=True)
class Window:
    """Buckets of `period` seconds from `start` (inclusive) to `end` (exclusive)."""

    period: int
    start: datetime
    end: datetime


# metric name -> bucket start -> sum over every job type
Sums = dict[str, dict[datetime, float]]


@aws.service_errors
def series(namespace: str, metrics: tuple[str, ...] = JOB_METRICS) -> list[tuple[str, Any]]:
    """(metric name, its dimensions) of every series of `metrics` in the namespace."""
    cloudwatch: Any = aws.client("cloudwatch")
    found: dict[str, tuple[str, Any]] = {}  # once each (moto lists a series per datapoint)
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
def sums(namespace: str, found: list[tuple[str, Any]], window: Window) -> Sums:
    """The sum of each metric per bucket of `window`, over all of its `found` series."""
    cloudwatch: Any = aws.client("cloudwatch")
    totals: Sums = {name: {} for name, _ in found}
    for first in range(0, len(found), _QUERIES_PER_CALL):
        chunk = found[first : first + _QUERIES_PER_CALL]
        queries = [
            {
                "Id": f"m{index}",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
                    "Period": window.period,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            }
            for index, (name, dims) in enumerate(chunk)
        ]
        kwargs: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": window.start,
            "EndTime": window.end,
        }
        while True:
            answer = cloudwatch.get_metric_data(**kwargs)
            for result in answer.get("MetricDataResults", []):
                name = chunk[int(result["Id"][1:])][0]
                for moment, value in zip(result["Timestamps"], result["Values"], strict=False):
                    bucket = moment.astimezone(UTC)
                    totals[name][bucket] = totals[name].get(bucket, 0.0) + float(value)
            if not answer.get("NextToken"):
                break
            kwargs["NextToken"] = answer["NextToken"]
    return totals
