"""Where a job's log lines are: on AWS a CloudWatch Logs Insights query of its worker's log
group; on the local stack, the lines of its function log files (`.jobkit/logs/*.log`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

LOOK_BACK_SECONDS = 14 * 86_400  # the Insights query's time range: the last two weeks
MAX_LINES = 1000


@dataclass(frozen=True)
class LogLine:
    function: str  # the file's function (logical id)
    text: str  # the line as the function printed it
    timestamp: str = ""
    level: str = ""
    message: str = ""


def local_lines(log_dir: Path, job_id: str, limit: int = MAX_LINES) -> list[LogLine]:
    """The lines of the local stack's function logs whose JSON holds the job id as a value
    (`"job_id":"<id>"`, `"correlation_id":"<id>"`), in file order, at most `limit`."""
    needle = json.dumps(job_id)
    found: list[LogLine] = []
    for path in sorted(log_dir.glob("*.log")):
        if path.name == "moto.log":
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if needle in line:
                    found.append(_parsed(path.stem, line.rstrip("\n")))
                    if len(found) >= limit:
                        return found
    return found


def _parsed(function: str, line: str) -> LogLine:
    """`<LogicalId>#<n> <JSON>` (what `FunctionLogs` writes): level, time and message shown
    apart; any other line as it is."""
    _, _, text = line.partition(" ")
    try:
        fields = json.loads(text)
    except ValueError:
        return LogLine(function, line)
    if not isinstance(fields, dict):
        return LogLine(function, line)
    return LogLine(
        function,
        text,
        str(fields.get("timestamp", "")),
        str(fields.get("level", "")),
        str(fields.get("message", "")),
    )


def _insights_value(value: str) -> str:
    """A string of the console's `queryDetail` object: URI-encoded, `%` -> `*`, quoted."""
    return "'" + quote(value, safe="-_.!~*'()").replace("%", "*")


def insights_url(region: str, log_groups: list[str], job_id: str) -> str:
    """A CloudWatch Logs Insights console link: the job's lines in its worker's log groups.

    The console keeps the query in its URL fragment as a JSURL-like object (`~(key~value...)`,
    strings URI-encoded with `*` for `%`), escaped, URI-encoded again and with `$` for `%`.
    Hand-written: AWS documents no API for console links."""
    escaped = job_id.replace("\\", "\\\\").replace('"', '\\"')
    query = f'fields @timestamp, @message\n| filter job_id = "{escaped}"\n| sort @timestamp asc'
    sources = "~".join(_insights_value(group) for group in log_groups)
    detail = (
        f"~(end~0~start~-{LOOK_BACK_SECONDS}~timeType~'RELATIVE~unit~'seconds"
        f"~editorString~{_insights_value(query)}~source~(~{sources}))"
    )
    escaped_detail = quote(detail, safe="@*_+-./").replace("~", "%7E")  # JavaScript's escape()
    fragment = quote("?queryDetail=" + escaped_detail, safe="-_.!~*'()").replace("%", "$")
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:logs-insights{fragment}"
    )
