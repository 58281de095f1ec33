"""The jobkit CLI against the stack's resources in moto (settings from the environment)."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from jobkit.worker import Worker
from jobkit_apps.email import SEND_INVITE
from jobkit_tools.cli import app
from jobkit_tools.discover import find, local_state
from tests.conftest import Stack, lambda_context, sqs_event

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
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", stack.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(stack.settings.queues))
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUES", json.dumps(stack.settings.dead_letter_queues))
    return stack


def test_enqueue_then_status_and_jobs_show_the_job(env: Stack) -> None:
    # Given a stack, when a job is enqueued from the command line
    result = runner.invoke(
        app, ["enqueue", "email.send_invite", "--payload", json.dumps(INVITE), "--id", "inv-1"]
    )
    # Then it is queued, one message is sent, and status shows it
    assert result.exit_code == 0, result.output
    assert "inv-1 queued" in result.output
    messages = env.receive(env.queue_url)
    assert len(messages) == 1
    shown = runner.invoke(app, ["status", "inv-1"])
    assert shown.exit_code == 0
    assert json.loads(shown.output)["state"] == "queued"
    # And `jobs` lists it from its claim on (waiting in the queue, it is counted there)
    listed = runner.invoke(app, ["jobs", "--type", "email.send_invite"])
    assert listed.exit_code == 0, listed.output
    assert "inv-1" not in listed.output
    worker = Worker(queue="email", settings=env.settings)
    worker.processor(SEND_INVITE)(lambda payload, ctx: {"sent": True})
    worker.handle(sqs_event(messages), lambda_context("EmailFunction"))
    listed = runner.invoke(app, ["jobs", "--type", "email.send_invite"])
    assert "inv-1" in listed.output
    assert "succeeded" in listed.output
    # And `--json` prints one job a line, its payload's address masked, as `status` does
    as_json = runner.invoke(app, ["jobs", "--queue", "email", "--id-prefix", "inv-", "--json"])
    (line,) = as_json.output.splitlines()
    assert json.loads(line)["id"] == "inv-1"
    assert json.loads(line)["payload"]["to"] == "a***@e***.com"
    shown = runner.invoke(app, ["status", "inv-1"])
    assert json.loads(shown.output)["payload"]["to"] == "a***@e***.com"
    assert "ada@example.com" not in shown.output + as_json.output


def test_invalid_payload_is_a_clear_error_and_nothing_is_sent(env: Stack) -> None:
    # Given a payload with a bad address, when enqueued
    bad = {**INVITE, "to": "not-an-address"}
    result = runner.invoke(app, ["enqueue", "email.send_invite", "--payload", json.dumps(bad)])
    # Then the command fails as bad input (2), naming the field, and nothing was sent
    assert result.exit_code == 2
    assert "to:" in result.output
    assert "Traceback" not in result.output
    assert env.receive(env.queue_url) == []


def test_malformed_json_and_unknown_type_are_clear_errors(env: Stack) -> None:
    not_json = runner.invoke(app, ["enqueue", "email.send_invite", "--payload", "{oops"])
    assert not_json.exit_code == 2
    assert "not valid JSON" in not_json.output
    unknown = runner.invoke(app, ["enqueue", "email.nope", "--payload", "{}"])
    assert unknown.exit_code == 2
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


def test_no_stack_says_where_it_looked_for_a_local_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a folder with no local stack in it or above it
    monkeypatch.delenv("JOBKIT_TABLE", raising=False)
    monkeypatch.chdir(tmp_path)
    # When a command needs the stack, Then it names the folder it searched from
    result = runner.invoke(app, ["jobs"])
    assert result.exit_code == 2
    assert str(tmp_path.resolve()) in " ".join(result.output.split())


def test_a_running_local_stack_is_found_from_any_folder_inside_the_project(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a project whose local stack is running (its state file, this process as its pid)
    state = tmp_path / ".jobkit" / "local.json"
    state.parent.mkdir()
    outputs = {"JobsTableName": stack.settings.table, "EmailQueueUrl": stack.queue_url}
    endpoint = "http://127.0.0.1:1"
    state.write_text(json.dumps({"pid": os.getpid(), "endpoint_url": endpoint, "outputs": outputs}))
    nested = tmp_path / "functions" / "email"
    nested.mkdir(parents=True)
    monkeypatch.delenv("JOBKIT_TABLE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # When the CLI looks for its stack from a folder deep inside the project
    monkeypatch.chdir(nested)
    target = find()
    # Then it finds that local stack
    assert target.endpoint_url == endpoint
    assert target.settings.table == stack.settings.table
    assert local_state() == state


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"jobkit {importlib.metadata.version('jobkit')}"


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
    assert bad.exit_code == 2
    assert "6 fields" in bad.output and "Traceback" not in bad.output


@pytest.fixture
def recurring_env(env: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack with a recurring schedule group, and tables wide enough not to fold."""
    import boto3

    from jobkit_tools import cli

    monkeypatch.setattr(cli.console, "width", 250)
    boto3.client("scheduler").create_schedule_group(Name="jobkit-recurring-cli")
    monkeypatch.setenv("JOBKIT_RECURRING_GROUP", "jobkit-recurring-cli")
    monkeypatch.setenv("JOBKIT_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    return env


def create(*args: str) -> Result:
    welcome = json.dumps({"to": "ada@example.com"})
    return runner.invoke(
        app,
        [
            "schedules",
            "create",
            "nightly",
            "0 2 * * ? *",
            "email.send_welcome",
            "--payload",
            welcome,
            *args,
        ],
    )


def state_of(name: str) -> str:
    import boto3

    found = boto3.client("scheduler").get_schedule(Name=name, GroupName="jobkit-recurring-cli")
    return str(found["State"])


def test_schedules_create_again_keeps_a_paused_schedule_paused_unless_told(
    recurring_env: Stack,
) -> None:
    # Given a schedule created paused from the command line
    assert create("--paused").exit_code == 0
    assert state_of("nightly") == "DISABLED"

    # When it is created again with neither --paused nor --enabled (a deploy script)
    again = create()

    # Then it is still paused; --enabled resumes it, and again without a flag keeps that
    assert again.exit_code == 0, again.output
    assert "DISABLED" in again.output and state_of("nightly") == "DISABLED"
    assert create("--enabled").exit_code == 0
    assert state_of("nightly") == "ENABLED"
    assert create().exit_code == 0
    assert state_of("nightly") == "ENABLED"


def test_schedules_create_with_start_and_end_and_list_shows_them(recurring_env: Stack) -> None:
    # When a schedule is created with a start and an end given with their UTC offsets
    made = create("--start", "2030-01-01T09:00:00+01:00", "--end", "2030-06-30T18:00:00+0200")

    # Then it was made with them, and list shows them in UTC, the first run at 02:00 on 2 January
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["schedules", "list"])
    assert listed.exit_code == 0, listed.output
    assert "2030-01-01 08:00:00" in listed.output
    assert "2030-06-30 16:00:00" in listed.output
    assert "2030-01-02 02:00:00" in listed.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--timezone", ""], "the timezone is empty"),
        (["--end", "2020-01-01T00:00:00+00:00"], "is in the past"),
        (["--start", "2031-01-01T00:00:00Z", "--end", "2030-01-01T00:00:00Z"], "after start"),
        (["--start", "2030-01-01T09:00:00"], "Invalid value for '--start'"),  # no offset
    ],
)
def test_schedules_create_with_a_bad_option_is_a_clear_error(
    recurring_env: Stack, args: list[str], says: str
) -> None:
    # When a schedule is created with an option that cannot be honoured
    result = create(*args)

    # Then the command says why, in one line and without a traceback, and nothing is created
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert says in " ".join(result.output.split())
    assert runner.invoke(app, ["schedules", "list"]).output.count("nightly") == 0


def test_schedules_create_with_a_cron_that_never_fires_is_refused(recurring_env: Stack) -> None:
    # When a schedule is created for 02:00 on 30 February
    welcome = json.dumps({"to": "ada@example.com"})
    result = runner.invoke(
        app,
        [
            "schedules",
            "create",
            "never",
            "0 2 30 2 ? *",
            "email.send_welcome",
            "--payload",
            welcome,
        ],
    )

    # Then the command says it never fires, with the expression
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "cron(0 2 30 2 ? *) never fires" in " ".join(result.output.split())


def test_run_now_runs_a_delayed_job_at_once(env: Stack) -> None:
    # Given a job delayed by 10 minutes (waiting in SQS)
    args = ["--payload", json.dumps(INVITE), "--id", "later-1", "--delay", "600"]
    delayed = runner.invoke(app, ["enqueue", "email.send_invite", *args])
    assert delayed.exit_code == 0, delayed.output
    # When it is run now
    result = runner.invoke(app, ["run-now", "later-1"])
    # Then it is queued and a message that needs no waiting is on the queue
    assert result.exit_code == 0, result.output
    assert "later-1 queued" in result.output
    (message,) = env.receive(env.queue_url)
    assert "not_before" not in json.loads(message["Body"])
    # And running it now again is refused: it is no longer scheduled
    again = runner.invoke(app, ["run-now", "later-1"])
    assert again.exit_code == 1 and "only a scheduled job" in again.output
