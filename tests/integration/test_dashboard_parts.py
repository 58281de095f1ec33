"""The dashboard's parts that need no page: a job's log lines (local files, the Logs Insights
link), the local stack's EMF lines turned into CloudWatch metrics (moto's server over real
HTTP), the chart's geometry and the activity windows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from moto.server import ThreadedMotoServer

from jobkit.activity import ActivityBucket, ActivitySeries, window
from jobkit_tools.dashboard import chart, job_logs
from jobkit_tools.dashboard.formatting import duration
from jobkit_tools.local.emf import EmfForwarder, metric_data
from jobkit_tools.local.endpoint import client


def emf_line(moment: datetime, job_type: str = "email.send_invite", succeeded: int = 3) -> str:
    """A line as Powertools Metrics prints it in a worker (`Worker._flush_metrics`)."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(moment.timestamp() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": "jobkit",
                        "Dimensions": [["job_type", "service"]],
                        "Metrics": [
                            {"Name": "JobSucceeded", "Unit": "Count"},
                            {"Name": "JobDuration", "Unit": "Milliseconds"},
                        ],
                    }
                ],
            },
            "job_type": job_type,
            "service": "email",
            "JobSucceeded": [float(succeeded)],
            "JobDuration": [681.0, 105.0],
        }
    )


def test_an_emf_line_becomes_one_datum_per_metric() -> None:
    # Given a worker's EMF line
    moment = datetime(2026, 11, 27, 12, 0, 1, tzinfo=UTC)
    # When it is read, Then each metric is a datum with its dimensions, values, unit and time
    found = metric_data(emf_line(moment))
    dimensions = [
        {"Name": "job_type", "Value": "email.send_invite"},
        {"Name": "service", "Value": "email"},
    ]
    assert found == [
        ("jobkit", {"MetricName": "JobSucceeded", "Dimensions": dimensions,
                    "Timestamp": moment, "Values": [3.0], "Unit": "Count"}),
        ("jobkit", {"MetricName": "JobDuration", "Dimensions": dimensions,
                    "Timestamp": moment, "Values": [681.0, 105.0], "Unit": "Milliseconds"}),
    ]  # fmt: skip
    # And a line that is not EMF, or is broken, is none
    assert metric_data('{"level":"INFO","message":"job succeeded"}') == []
    assert metric_data('{"_aws": {"Timestamp": "soon"}') == []
    assert metric_data("plain text with _aws in it") == []


@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_the_forwarder_puts_emf_metrics_into_cloudwatch_and_never_raises(
    moto_server: str,
) -> None:
    # Given the forwarder on a moto server, and two EMF lines among other output, one broken
    forwarder = EmfForwarder(moto_server).start()
    now = datetime.now(UTC)
    for line in (
        '{"level":"INFO","message":"job processing"}',
        emf_line(now, "email.send_invite", 3),
        '{"_aws": broken',
        emf_line(now, "email.send_welcome", 2),
    ):
        forwarder.offer(line)
    # When it stops (sending what it holds)
    forwarder.stop()
    # Then CloudWatch has both job types' successes, summed as GetMetricData sums them
    cloudwatch = client("cloudwatch", moto_server)
    series = cloudwatch.list_metrics(Namespace="jobkit", MetricName="JobSucceeded")["Metrics"]
    assert {d["Value"] for m in series for d in m["Dimensions"] if d["Name"] == "job_type"} == {
        "email.send_invite",
        "email.send_welcome",
    }
    stats = cloudwatch.get_metric_statistics(
        Namespace="jobkit",
        MetricName="JobSucceeded",
        Dimensions=[
            {"Name": "job_type", "Value": "email.send_invite"},
            {"Name": "service", "Value": "email"},
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=600,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [point["Sum"] for point in stats] == [3.0]


def test_a_forwarder_whose_cloudwatch_is_gone_drops_lines_quietly() -> None:
    # Given a forwarder on an endpoint nothing listens on
    forwarder = EmfForwarder("http://127.0.0.1:9").start()
    # When lines are offered and it stops, Then nothing is raised to the caller
    forwarder.offer(emf_line(datetime.now(UTC)))
    forwarder.stop(timeout=30)
    # And a forwarder not started takes lines without keeping them
    idle = EmfForwarder("http://127.0.0.1:9")
    idle.offer(emf_line(datetime.now(UTC)))
    assert idle._lines.empty()


def test_a_jobs_local_log_lines_are_those_naming_it(tmp_path: Path) -> None:
    # Given function log files as the local stack writes them, and moto's own log
    def line(job_id: str, message: str) -> str:
        fields = {"level": "INFO", "message": message, "timestamp": "2026-11-27T12:00:00Z"}
        return f"EmailFunction#1 {json.dumps({**fields, 'job_id': job_id})}\n"

    (tmp_path / "EmailFunction.log").write_text(
        line("demo-1", "job processing") + line("demo-10", "job processing")
        + "EmailFunction#1 Traceback (most recent call last):\n" + line("demo-1", "job succeeded")
    )  # fmt: skip
    (tmp_path / "moto.log").write_text('POST / {"job_id": "demo-1"}\n')
    # When the lines of job demo-1 are asked for
    found = job_logs.local_lines(tmp_path, "demo-1")
    # Then they are its two lines, in order, read apart; not demo-10's, not moto's
    assert [(f.function, f.level, f.message) for f in found] == [
        ("EmailFunction", "INFO", "job processing"),
        ("EmailFunction", "INFO", "job succeeded"),
    ]
    assert job_logs.local_lines(tmp_path, "demo-1", limit=1)[0].message == "job processing"


def test_the_logs_insights_link_queries_the_jobs_lines_in_its_log_group() -> None:
    # Given a job id with characters that need escaping in a query and in a URL
    job_id = 'order:1/"x"'
    # When its Logs Insights link is made
    url = job_logs.insights_url("eu-west-1", ["/aws/lambda/jobkit-dev-Email-A1"], job_id)
    # Then it opens the eu-west-1 console's Insights page
    parts = urlsplit(url)
    assert parts.netloc == "eu-west-1.console.aws.amazon.com"
    assert parts.fragment.startswith("logsV2:logs-insights$3FqueryDetail$3D")
    # And, decoded as the console decodes it, it queries the log group for the job id
    detail = unquote(unquote(parts.fragment.replace("$", "%")).split("queryDetail=", 1)[1])
    fields = dict(re.findall(r"(\w+)~('[^~)]*|[-\d]+)", detail))
    assert fields["start"] == "-1209600" and fields["timeType"] == "'RELATIVE"
    query = unquote(fields["editorString"][1:].replace("*", "%"))
    assert query.splitlines()[1] == '| filter job_id = "order:1/\\"x\\""'
    source = re.search(r"source~\(~'([^)]*)\)", detail)
    assert source is not None
    assert unquote(source.group(1).replace("*", "%")) == "/aws/lambda/jobkit-dev-Email-A1"


def test_the_chart_stacks_each_buckets_outcomes_to_scale() -> None:
    # Given an hour of 5-minute buckets with 3 succeeded, 1 retried and 1 failed in one
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    buckets = [ActivityBucket(start=start + timedelta(minutes=5 * n)) for n in range(12)]
    buckets[4] = ActivityBucket(start=buckets[4].start, succeeded=3, retried=1, failed=1)
    # When it is drawn
    drawn = chart.build(ActivitySeries(period_seconds=300, buckets=buckets), "Last hour")
    # Then that bucket is a stack of three bars, succeeded at the bottom, filling the plot to
    # its top (5, a round number), and the totals are the bucket's
    bars = {bar.outcome: bar for bar in drawn.bars}
    plot = chart.HEIGHT - chart.TOP - chart.BOTTOM
    assert [b.outcome for b in drawn.bars] == ["succeeded", "retried", "failed"]
    assert bars["succeeded"].height == pytest.approx(plot * 3 / 5)
    assert bars["retried"].y + bars["retried"].height == pytest.approx(bars["succeeded"].y)
    assert bars["failed"].y == pytest.approx(chart.TOP)
    assert drawn.totals == {"succeeded": 3, "retried": 1, "failed": 1} and not drawn.empty
    assert bars["succeeded"].title == "12:20 UTC: 3 succeeded"
    # And round tops: the smallest 1, 2 or 5 times a power of ten at least the highest bar
    assert [chart.nice_top(n) for n in (0, 1, 3, 7, 11, 20, 480)] == [1, 1, 5, 10, 20, 20, 500]


def test_activity_windows_end_with_the_bucket_holding_now() -> None:
    # Given a moment in the middle of a 5-minute bucket
    now = datetime(2026, 11, 27, 12, 7, 30, tzinfo=UTC)
    # Then the hour's window is 12 buckets ending with the one now is in
    span = window(300, 12, now)
    assert (span.start, span.end) == (
        datetime(2026, 11, 27, 11, 10, tzinfo=UTC),
        datetime(2026, 11, 27, 12, 10, tzinfo=UTC),
    )
    assert [duration(s) for s in (None, 0.4, 59, 250, 7200, 90_000)] == [
        "-", "0s", "59s", "4m 10s", "2h 0m", "1d 1h",
    ]  # fmt: skip
