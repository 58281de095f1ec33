"""What CloudWatch Logs does with Embedded Metric Format lines, for the local stack.

On AWS a function's EMF log line (JSON with an `_aws` key, as Powertools Metrics prints it)
becomes metrics in CloudWatch. Here `FunctionLogs.write` offers every function output line to an
`EmfForwarder`, which turns the EMF ones into PutMetricData calls on moto's CloudWatch, so
`Jobkit.job_activity` (the dashboard's chart) reads the workers' real metrics locally too.

Hand-written: no maintained library turns EMF back into PutMetricData (they all write EMF).
`offer` only checks for the key and queues the line; one background thread parses and sends in
batches, so a function's output is never held up, and a line it cannot read or send is dropped
(logged at debug level), never breaking logging.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from datetime import UTC, datetime
from typing import Any

from jobkit_tools.local.endpoint import client

log = logging.getLogger("jobkit.local")

_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
_DATUMS_PER_CALL = 1000  # PutMetricData's limit
_STOP = ""


def metric_data(line: str) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, PutMetricData datum) for each metric of an EMF line ([] if it is none)."""
    try:
        document = json.loads(line)
        meta = document["_aws"]
        moment = datetime.fromtimestamp(int(meta["Timestamp"]) / 1000, UTC)
        found: list[tuple[str, dict[str, Any]]] = []
        for directive in meta["CloudWatchMetrics"]:
            for dimension_set in directive.get("Dimensions") or [[]]:
                dimensions = [{"Name": k, "Value": str(document[k])} for k in dimension_set]
                found += [
                    (directive["Namespace"], _datum(metric, document, dimensions, moment))
                    for metric in directive["Metrics"]
                    if metric["Name"] in document
                ]
        return found
    except (ValueError, KeyError, TypeError, AttributeError):
        return []  # not an EMF line after all


def _datum(
    metric: dict[str, Any], document: dict[str, Any], dimensions: Any, moment: datetime
) -> dict[str, Any]:
    value = document[metric["Name"]]
    values = [float(v) for v in (value if isinstance(value, list) else [value])][:150]
    unit = metric.get("Unit", "None")
    return {
        "MetricName": metric["Name"],
        "Dimensions": dimensions,
        "Timestamp": moment,
        "Values": values,
        "Unit": unit if unit in _UNITS else "None",
    }


class EmfForwarder:
    """EMF lines -> PutMetricData on moto, from one background thread (see the module)."""

    def __init__(self, endpoint_url: str, max_waiting: int = 10_000) -> None:
        self.endpoint_url = endpoint_url
        self._lines: queue.Queue[str] = queue.Queue(max_waiting)
        self._thread: threading.Thread | None = None

    def start(self) -> EmfForwarder:
        self._thread = threading.Thread(target=self._run, name="emf-forwarder", daemon=True)
        self._thread.start()
        return self

    def offer(self, line: str) -> None:
        """Called for every function output line: keep the EMF ones (never raises, never
        blocks; past `max_waiting` unsent lines, new ones are dropped)."""
        if '"_aws"' in line and self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._lines.put_nowait(line)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then end the thread."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._lines.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        cloudwatch = client("cloudwatch", self.endpoint_url)
        while True:
            batch = [self._lines.get()]
            while batch[-1] != _STOP and len(batch) < 100:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            self._send(cloudwatch, [line for line in batch if line != _STOP])
            if batch[-1] == _STOP:
                return

    def _send(self, cloudwatch: Any, lines: list[str]) -> None:
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            for namespace, datum in metric_data(line):
                by_namespace.setdefault(namespace, []).append(datum)
        for namespace, data in by_namespace.items():
            for first in range(0, len(data), _DATUMS_PER_CALL):
                try:
                    cloudwatch.put_metric_data(
                        Namespace=namespace, MetricData=data[first : first + _DATUMS_PER_CALL]
                    )
                except Exception as exc:  # moto gone or refusing: metrics are best effort
                    log.debug("EMF metrics not forwarded: %s", exc)
