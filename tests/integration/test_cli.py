"""The jobkit CLI against the stack's resources in moto (settings from the environment)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from jobkit_tools.cli import app
from tests.conftest import Stack

runner = CliRunner()
INVITE = {
    "to": "ada@example.com",
    "inviter_name": "Grace",
    "org_name": "Analytical Engines",
    "accept_url": "https://app.example.com/invite/1",
}


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(stack.settings.queues))
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUES", json.dumps(stack.settings.dead_letter_queues))
    return stack


def test_enqueue_then_status_and_jobs_show_the_job(env: Stack) -> None:
    # Given a stack, when a job is enqueued from the command line
    result = runner.invoke(
        app, ["enqueue", "email.send_invite", "--payload", json.dumps(INVITE), "--id", "inv-1"]
    )
    # Then it is queued, one message is sent, and status/jobs show it
    assert result.exit_code == 0, result.output
    assert "inv-1 queued" in result.output
    assert len(env.receive(env.queue_url)) == 1
    shown = runner.invoke(app, ["status", "inv-1"])
    assert shown.exit_code == 0
    assert json.loads(shown.output)["state"] == "queued"
    listed = runner.invoke(app, ["jobs", "--type", "email.send_invite"])
    assert "inv-1" in listed.output


def test_invalid_payload_is_a_clear_error_and_nothing_is_sent(env: Stack) -> None:
    # Given a payload with a bad address, when enqueued
    bad = {**INVITE, "to": "not-an-address"}
    result = runner.invoke(app, ["enqueue", "email.send_invite", "--payload", json.dumps(bad)])
    # Then the command fails naming the field, and nothing was sent
    assert result.exit_code == 1
    assert "to:" in result.output
    assert "Traceback" not in result.output
    assert env.receive(env.queue_url) == []


def test_malformed_json_and_unknown_type_are_clear_errors(env: Stack) -> None:
    not_json = runner.invoke(app, ["enqueue", "email.send_invite", "--payload", "{oops"])
    assert not_json.exit_code == 1
    assert "not valid JSON" in not_json.output
    unknown = runner.invoke(app, ["enqueue", "email.nope", "--payload", "{}"])
    assert unknown.exit_code == 1
    assert "unknown job type" in unknown.output


def test_retry_of_a_job_that_did_not_fail_says_why(env: Stack) -> None:
    runner.invoke(
        app, ["enqueue", "email.send_invite", "--payload", json.dumps(INVITE), "--id", "r"]
    )
    result = runner.invoke(app, ["retry", "r"])
    assert result.exit_code == 1
    assert "only a failed job can be retried" in result.output
    missing = runner.invoke(app, ["status", "nope"])
    assert missing.exit_code == 1


def test_no_stack_anywhere_is_a_clear_message(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    # Given no settings in the environment, no local stack and no deployed stack
    monkeypatch.delenv("JOBKIT_TABLE", raising=False)
    monkeypatch.chdir(str(tmp_path))
    # When a command needs the stack
    result = runner.invoke(app, ["jobs"])
    # Then it says how to get one
    assert result.exit_code == 2
    assert "jobkit dev" in result.output


def test_schema_exports_the_payload_contract() -> None:
    result = runner.invoke(app, ["schema", "email.send_invite"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "email.send_invite"
    assert "to" in schema["required"]


def test_a_job_enqueued_for_later_can_be_cancelled(env: Stack) -> None:
    # Given a job due in a minute, enqueued from the command line
    result = runner.invoke(
        app,
        [
            "enqueue",
            "email.send_invite",
            "--payload",
            json.dumps(INVITE),
            "--id",
            "c",
            "--delay",
            "60",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "c scheduled (due" in result.output
    # When it is cancelled, it says so; cancelling again says why it cannot
    assert "c cancelled" in runner.invoke(app, ["cancel", "c"]).output
    again = runner.invoke(app, ["cancel", "c"])
    assert again.exit_code == 1
    assert "is cancelled" in again.output


def test_a_naive_run_at_is_refused(env: Stack) -> None:
    result = runner.invoke(
        app,
        [
            "enqueue",
            "email.send_invite",
            "--payload",
            json.dumps(INVITE),
            "--run-at",
            "2030-01-01T09:00:00",
        ],
    )
    assert result.exit_code != 0
    assert env.receive(env.queue_url) == []


def test_schedules_create_list_pause_resume_delete(
    env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from jobkit_tools import cli

    monkeypatch.setattr(cli.console, "width", 200)  # tables unfolded
    # Given a stack with a recurring schedule group
    boto3.client("scheduler").create_schedule_group(Name="jobkit-recurring-cli")
    monkeypatch.setenv("JOBKIT_RECURRING_GROUP", "jobkit-recurring-cli")
    monkeypatch.setenv("JOBKIT_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    welcome = json.dumps({"to": "ada@example.com"})

    # When a weekday schedule is created from the command line (bare six fields, a timezone)
    made = runner.invoke(
        app,
        [
            "schedules",
            "create",
            "weekday-welcome",
            "0 9 ? * MON-FRI *",
            "email.send_welcome",
            "--payload",
            welcome,
            "--timezone",
            "Europe/Berlin",
        ],
    )

    # Then it exists as cron(...) in Berlin time, and list shows it with its next run
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["schedules", "list"])
    assert "weekday-welcome" in listed.output
    assert "cron(0 9 ? * MON-FRI *)" in listed.output
    assert "Europe/Berlin" in listed.output and "ENABLED" in listed.output

    # When it is paused, resumed and deleted, each step says what it did
    paused = runner.invoke(app, ["schedules", "pause", "weekday-welcome"])
    assert paused.exit_code == 0 and "DISABLED" in paused.output
    resumed = runner.invoke(app, ["schedules", "resume", "weekday-welcome"])
    assert resumed.exit_code == 0 and "ENABLED" in resumed.output
    deleted = runner.invoke(app, ["schedules", "delete", "weekday-welcome"])
    assert deleted.exit_code == 0 and "weekday-welcome deleted" in deleted.output

    # And deleting it again, or an invalid expression, is a clear error without a traceback
    again = runner.invoke(app, ["schedules", "delete", "weekday-welcome"])
    assert again.exit_code == 1 and "no recurring schedule" in again.output
    bad = runner.invoke(
        app, ["schedules", "create", "bad", "0 9 * * *", "email.send_welcome", "--payload", welcome]
    )
    assert bad.exit_code == 1
    assert "6 fields" in bad.output and "Traceback" not in bad.output
