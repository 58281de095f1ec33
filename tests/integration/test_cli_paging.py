"""`jobkit jobs` a page at a time (`--page-token`, the updated-time filters) and the oldest
message's age in `jobkit queues`, against the stack's resources in moto."""

from __future__ import annotations

import json
import shlex
import time
from datetime import timedelta

import boto3
import pytest
from typer.testing import CliRunner

from jobkit.models import utcnow
from jobkit_tools.cli import app
from tests.conftest import Stack

from .test_core_support import ECHO, payload

runner = CliRunner()


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Five scheduled jobs, `s-00` (oldest) to `s-04`, and the CLI's settings on the stack."""
    for i in range(5):
        stack.client.enqueue(ECHO, payload(i), job_id=f"s-{i:02d}", delay=600)
        time.sleep(0.002)
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", stack.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(stack.settings.queues))
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUES", json.dumps(stack.settings.dead_letter_queues))
    return stack


def ids_in(table: str) -> list[str]:
    return [word for line in table.splitlines() for word in line.split() if word.startswith("s-")]


def test_jobs_prints_the_command_for_the_next_page_until_the_last(env: Stack) -> None:
    # When the scheduled jobs are listed two at a time
    first = runner.invoke(app, ["jobs", "--state", "scheduled", "--limit", "2"])
    # Then the first page shows the two newest, and stderr the command for the next page
    assert first.exit_code == 0, first.stderr
    assert ids_in(first.stdout) == ["s-04", "s-03"]
    hint = first.stderr.strip()
    assert hint.startswith("more jobs: jobkit jobs --state scheduled --limit 2 --page-token ")
    # When that command runs, then the next two come, and again a hint
    second = runner.invoke(app, shlex.split(hint.removeprefix("more jobs: jobkit ")))
    assert second.exit_code == 0, second.stderr
    assert ids_in(second.stdout) == ["s-02", "s-01"]
    # And the last page has the last job and no hint
    third = runner.invoke(
        app, shlex.split(second.stderr.strip().removeprefix("more jobs: jobkit "))
    )
    assert third.exit_code == 0, third.stderr
    assert ids_in(third.stdout) == ["s-00"]
    assert third.stderr == ""


def test_jobs_json_keeps_one_job_a_line_and_puts_the_token_on_stderr(env: Stack) -> None:
    # When the first page is listed as JSON
    first = runner.invoke(app, ["jobs", "--state", "scheduled", "--limit", "3", "--json"])
    # Then stdout is still one job a line, and stderr one JSON line with the next token
    assert first.exit_code == 0, first.stderr
    assert [json.loads(line)["id"] for line in first.stdout.splitlines()] == [
        "s-04",
        "s-03",
        "s-02",
    ]
    token = json.loads(first.stderr)["next_token"]
    # When the token is passed back
    args = ["jobs", "--state", "scheduled", "--limit", "3", "--json", "--page-token", token]
    second = runner.invoke(app, args)
    # Then the rest comes, with no token after it
    assert [json.loads(line)["id"] for line in second.stdout.splitlines()] == ["s-01", "s-00"]
    assert second.stderr == ""


def test_jobs_filter_by_updated_time(env: Stack) -> None:
    # Given the time the middle job last changed (naive on the command line: UTC)
    middle = env.client.get_job("s-02")
    assert middle is not None
    moment = middle.updated_at.replace(tzinfo=None).isoformat()
    # When listing the jobs changed at or after it, and before it
    after = runner.invoke(app, ["jobs", "--state", "scheduled", "--updated-after", moment])
    before = runner.invoke(app, ["jobs", "--state", "scheduled", "--updated-before", moment])
    # Then each has its side of it
    assert ids_in(after.stdout) == ["s-04", "s-03", "s-02"]
    assert ids_in(before.stdout) == ["s-01", "s-00"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--page-token", "garbage"], "not a token this listing gave out"),
        (["--updated-after", "yesterday"], "Invalid value for '--updated-after'"),
    ],
)
def test_jobs_refuses_bad_input_in_one_line(env: Stack, args: list[str], message: str) -> None:
    # When the jobs are listed with a bad token or time
    result = runner.invoke(app, ["jobs", "--state", "scheduled", *args])
    # Then it is bad input: exit 2, one line saying why, no traceback
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_jobs_refuses_a_token_of_other_filters(env: Stack) -> None:
    # Given the token of a listing of scheduled jobs
    first = runner.invoke(app, ["jobs", "--state", "scheduled", "--limit", "2", "--json"])
    token = json.loads(first.stderr)["next_token"]
    # When it is passed to a listing of failed jobs
    result = runner.invoke(app, ["jobs", "--state", "failed", "--page-token", token])
    # Then it is refused in one line that says why
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "made for other filters" in result.stderr


def test_queues_shows_the_oldest_message_age(env: Stack) -> None:
    # Given SQS's metric of the email queue's oldest message: 250 s a minute ago
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": "email"}],
                "Timestamp": utcnow() - timedelta(minutes=1),
                "Value": 250,
            }
        ],
    )
    # When `jobkit queues` runs, as a table and as JSON
    shown = runner.invoke(app, ["queues", "--queue", "email"])
    as_json = runner.invoke(app, ["queues", "--queue", "email", "--json"])
    # Then the table's "oldest" column says 4m 10s, and the JSON the seconds
    assert shown.exit_code == 0, shown.stderr
    header = next(line for line in shown.stdout.splitlines() if "oldest" in line)
    row = next(line for line in shown.stdout.splitlines() if "email" in line)
    cells = dict(zip(header.split("┃")[1:-1], row.split("│")[1:-1], strict=True))
    assert {k.strip(): v.strip() for k, v in cells.items()}["oldest"] == "4m 10s"
    assert json.loads(as_json.stdout)["queues"][0]["oldest_age_seconds"] == 250
