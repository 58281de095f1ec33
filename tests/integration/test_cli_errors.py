"""Bad input on the command line is one line that says what is wrong and exit code 2: never a
traceback, never a half-done action."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from jobkit_tools.cli import app
from tests.conftest import Stack

from .test_cli import env  # noqa: F401 (a fixture: the stack's settings in the environment)

runner = CliRunner()
WELCOME = json.dumps({"to": "ada@example.com"})


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--id", "x" * 513], "512"),
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--id", ""], "empty"),
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--id", "a b"], "' '"),
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--delay", "inf"], "finite"),
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--delay", "nan"], "finite"),
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--delay", "1e12"], "365 days"),
        (["enqueue", "email.send_welcome", "--payload", WELCOME, "--delay", "-1"], "negative"),
        (["enqueue", "email.send_welcome", "--payload", "{oops"], "not valid JSON"),
        (["enqueue", "email.nope", "--payload", WELCOME], "unknown job type"),
        (["enqueue", "email.send_welcome", "--payload", '{"to": "nobody"}'], "to:"),
        (["status", ""], "empty"),
        (["cancel", ""], "empty"),
        (["retry", ""], "empty"),
        (["status", "x" * 600], "512"),
        (["jobs", "--type", "email.nope"], "unknown job type"),
        (["schedules", "pause", ""], "schedule name"),
        (["schedules", "resume", ""], "schedule name"),
        (["schedules", "delete", ""], "schedule name"),
        (
            ["schedules", "create", "n", "0 2 * * ? *", "nightly.fan_out", "--timezone", ""],
            "timezone",
        ),
    ],
    ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else None,
)
def test_bad_input_is_one_line_and_exit_code_2(
    env: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    says: str,
) -> None:
    # Given a stack with Scheduler settings, and a command line with one thing wrong
    monkeypatch.setenv("JOBKIT_RECURRING_GROUP", "jobkit-recurring")
    monkeypatch.setenv("JOBKIT_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    # When it runs
    result = runner.invoke(app, args)
    # Then it exits 2 with one line saying what is wrong, and nothing was sent
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert says in lines[0]
    assert env.receive(env.queue_url) == []


def test_a_job_that_is_not_there_is_exit_code_1(env: Stack) -> None:  # noqa: F811
    # Given a valid id the log does not know, When its status is asked
    result = runner.invoke(app, ["status", "no-such-job"])
    # Then it is a failure of the request, not of its input
    assert result.exit_code == 1
    assert "no job 'no-such-job'" in result.output


def test_an_aws_failure_is_one_line_and_exit_code_1(
    env: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given settings that name a table that does not exist
    monkeypatch.setenv("JOBKIT_TABLE", "no-such-table")
    # When a job's status is asked, Then AWS's refusal is one line, exit code 1
    result = runner.invoke(app, ["status", "any"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ResourceNotFoundException" in lines[0], result.output
