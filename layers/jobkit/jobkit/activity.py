"""The activity calls of `jobkit.client.Jobkit`: what the workers did lately, from the job
metrics they emit (`jobkit.metrics_reads`), and where their log lines are.

`job_activity` is a ListMetrics per metric and one GetMetricData per window (the last hour in
5-minute buckets, the last day in hourly ones). A caller that may not read CloudWatch metrics
gets the `ServiceError` (the counts of everything else do not need it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from jobkit import mappings, metrics_reads
from jobkit.errors import InvalidRequestError
from jobkit.queues import arn_of
from jobkit.settings import Settings

HOUR = (300, 12)  # (seconds per bucket, buckets)
DAY = (3600, 24)


class ActivityBucket(BaseModel):
    """Jobs that ended an attempt in `[start, start + period)`, across every job type."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    succeeded: int = 0
    failed: int = 0
    retried: int = 0


class ActivitySeries(BaseModel):
    """Consecutive buckets, oldest first; the last one is still filling."""

    model_config = ConfigDict(frozen=True)

    period_seconds: int
    buckets: list[ActivityBucket]

    def total(self, outcome: str) -> int:
        return sum(int(getattr(bucket, outcome)) for bucket in self.buckets)


class JobActivity(BaseModel):
    model_config = ConfigDict(frozen=True)

    last_hour: ActivitySeries
    last_day: ActivitySeries


@dataclass(frozen=True)
class WorkerLogs:
    """The function that works a queue and its CloudWatch Logs log group."""

    function: str
    log_group: str
    region: str


def window(period: int, count: int, now: datetime) -> metrics_reads.Window:
    """`count` buckets of `period` seconds aligned on the period, the last one holding `now`."""
    epoch = int(now.timestamp())
    end = datetime.fromtimestamp(epoch - epoch % period + period, UTC)
    return metrics_reads.Window(period, end - timedelta(seconds=period * count), end)


def _series(sums: metrics_reads.Sums, span: metrics_reads.Window) -> ActivitySeries:
    buckets: list[ActivityBucket] = []
    start = span.start
    while start < span.end:
        counts = {
            outcome: round(sums.get(metric, {}).get(start, 0.0))
            for outcome, metric in zip(
                ("succeeded", "failed", "retried"), metrics_reads.JOB_METRICS, strict=True
            )
        }
        buckets.append(ActivityBucket(start=start, **counts))
        start += timedelta(seconds=span.period)
    return ActivitySeries(period_seconds=span.period, buckets=buckets)


class ActivityCalls:
    """`Jobkit`'s calls on what the workers did."""

    settings: Settings

    def job_activity(self, now: datetime | None = None) -> JobActivity:
        """Jobs succeeded, failed and retried per 5 minutes over the last hour and per hour
        over the last day, summed over every job type (`ServiceError`: metrics unreadable)."""
        now = now or datetime.now(UTC)
        namespace = self.settings.metrics_namespace
        found = metrics_reads.job_series(namespace)
        spans = [window(*HOUR, now), window(*DAY, now)]
        hour, day = (_series(metrics_reads.sums(namespace, found, s), s) for s in spans)
        return JobActivity(last_hour=hour, last_day=day)

    def worker_logs(self, queue: str) -> list[WorkerLogs]:
        """The functions that read `queue` (its event source mappings) and their log groups
        (`/aws/lambda/<function>`, as the worker block names them)."""
        if not queue:
            raise InvalidRequestError("name a queue")
        found = mappings.of_queue(arn_of(self.settings.queue_url_of(queue)))
        logs: list[WorkerLogs] = []
        for mapping in found:
            arn = str(mapping.get("FunctionArn", ""))
            parts = arn.split(":")  # arn:aws:lambda:<region>:<account>:function:<name>[:alias]
            if len(parts) >= 7:
                logs.append(WorkerLogs(parts[6], f"/aws/lambda/{parts[6]}", parts[3]))
        return logs
