"""Looking into a dead-letter queue without consuming it, redriving only part of it, purging
it: the client calls and `jobkit dlq ...`, against moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from jobkit import JobState, PermanentError
from jobkit.errors import InvalidRequestError
from jobkit.jobs import JobType
from jobkit_tools import dlq_commands
from jobkit_tools.cli import app
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    OTHER,
    RECIPIENT,
    Runs,
    deliver,
    make_worker,
    payload,
    receive_now,
)

runner = CliRunner()


def fail_job(stack: Stack, runs: Runs, job_id: str, why: str, job_type: JobType = ECHO) -> None:
    """Enqueue a job and fail it permanently with `why`: its dead letter is in the DLQ."""
    stack.client.enqueue(job_type, payload(), job_id=job_id)
    runs.actions.append(PermanentError(why))
    deliver(stack, make_worker(stack, runs), receive_now(stack))


def in_dlq(stack: Stack) -> list[dict[str, Any]]:
    """The DLQ's visible messages, received without hiding them (VisibilityTimeout 0)."""
    got = boto3.client("sqs").receive_message(
        QueueUrl=stack.dlq_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
    )
    return list(got.get("Messages", []))


def dlq_job_ids(stack: Stack) -> list[str]:
    return sorted(json.loads(m["Body"])["id"] for m in in_dlq(stack))


def state_of(stack: Stack, job_id: str) -> JobState:
    job = stack.client.get_job(job_id)
    assert job is not None
    return job.state


@pytest.fixture
def three(stack: Stack) -> Runs:
    """Dead letters of: a-1 (echo, partner said no), a-2 (echo, quota exceeded), b-1 (other)."""
    runs = Runs()
    fail_job(stack, runs, "a-1", "partner said no")
    fail_job(stack, runs, "a-2", "quota exceeded")
    fail_job(stack, runs, "b-1", "partner said no", OTHER)
    return runs


def test_listing_reports_each_dead_letter_and_leaves_them_all_in_the_dlq(
    stack: Stack, three: Runs
) -> None:
    # Given three dead letters
    # When they are listed
    letters = stack.client.dead_letters("email")
    # Then each is reported with its job id, type, reason and a fresh age
    assert sorted((d.job_id, d.job_type) for d in letters) == [
        ("a-1", ECHO.name),
        ("a-2", ECHO.name),
        ("b-1", OTHER.name),
    ]
    by_id = {d.job_id: d for d in letters}
    assert "partner said no" in (by_id["a-1"].reason or "")
    assert "quota exceeded" in (by_id["a-2"].reason or "")
    assert all(0 <= d.age_seconds < 60 and d.receive_count >= 1 for d in letters)
    # and every one of them is visible in the DLQ again at once (nothing consumed)
    assert dlq_job_ids(stack) == ["a-1", "a-2", "b-1"]


def test_listing_masks_addresses_and_takes_foreign_messages(stack: Stack) -> None:
    # Given a message in the DLQ that is no jobkit envelope, with an address in it
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=f"mail {RECIPIENT} failed")
    # When the DLQ is listed
    (letter,) = stack.client.dead_letters("email")
    # Then the address is masked, and there is no job id or type
    assert RECIPIENT not in letter.body
    assert "a***@e***.com" in letter.body
    assert (letter.job_id, letter.job_type, letter.reason) == (None, None, None)
    # and the message is still there
    assert len(in_dlq(stack)) == 1


def test_listing_respects_the_limit_and_a_dead_letter_is_found_by_message_id(
    stack: Stack, three: Runs
) -> None:
    # When one is listed, then found by its message id
    (first,) = stack.client.dead_letters("email", limit=1)
    found = stack.client.find_dead_letter("email", first.message_id)
    # Then it is the same dead letter, its body masked, and an unknown id finds nothing
    assert found is not None and found.job_id == first.job_id
    assert RECIPIENT not in found.body
    assert stack.client.find_dead_letter("email", "no-such-message") is None
    assert len(in_dlq(stack)) == 3


def test_redrive_by_type_moves_only_that_type_and_the_job_runs(stack: Stack, three: Runs) -> None:
    # When only the dead letters of OTHER are redriven
    result = stack.client.redrive("email", job_type=OTHER.name)
    # Then one moved, two were left, and the DLQ holds the others
    assert (result.matched, result.moved, result.left) == (1, 1, 2)
    assert dlq_job_ids(stack) == ["a-1", "a-2"]
    # and the job is queued again, and runs to success with fresh attempts
    assert state_of(stack, "b-1") == JobState.QUEUED
    assert deliver(stack, make_worker(stack, three), receive_now(stack)) == []
    job = stack.client.get_job("b-1")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert state_of(stack, "a-1") == JobState.FAILED


def test_redrive_by_reason_text_and_by_ids(stack: Stack, three: Runs) -> None:
    # When the dead letters whose reason says QUOTA (any case) are redriven
    assert stack.client.redrive("email", reason_contains="QUOTA").moved == 1
    # Then only a-2 left the DLQ
    assert dlq_job_ids(stack) == ["a-1", "b-1"]
    assert state_of(stack, "a-2") == JobState.QUEUED
    # When a-1 is redriven by its id
    assert stack.client.redrive("email", job_ids=["a-1"]).moved == 1
    # Then only b-1 is left
    assert dlq_job_ids(stack) == ["b-1"]
    assert state_of(stack, "a-1") == JobState.QUEUED


def test_redrive_respects_the_limit(stack: Stack, three: Runs) -> None:
    result = stack.client.redrive("email", limit=2)
    assert (result.matched, result.moved) == (2, 2)
    assert len(in_dlq(stack)) == 1
    assert len(receive_now(stack)) == 2


def test_a_dry_run_moves_nothing(stack: Stack, three: Runs) -> None:
    # When a redrive of the 'partner' ones is tried dry
    result = stack.client.redrive("email", reason_contains="partner", dry_run=True)
    # Then it says two would move, and none did
    assert (result.dry_run, result.matched, result.moved, result.left) == (True, 2, 0, 3)
    assert dlq_job_ids(stack) == ["a-1", "a-2", "b-1"]
    assert receive_now(stack) == []
    assert state_of(stack, "a-1") == JobState.FAILED


@pytest.mark.parametrize(
    "options",
    [
        {"job_type": "test.core.nope"},
        {"job_ids": []},
        {"reason_contains": " "},
        {"limit": 0},
    ],
)
def test_bad_filters_are_refused_and_nothing_moves(
    stack: Stack, three: Runs, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequestError):
        stack.client.redrive("email", **options)
    assert len(in_dlq(stack)) == 3


def test_an_unknown_queue_is_refused(stack: Stack) -> None:
    with pytest.raises(InvalidRequestError, match="unknown queue"):
        stack.client.dead_letters("nope")


def test_purge_empties_the_dlq(stack: Stack, three: Runs) -> None:
    stack.client.purge_dead_letters("email")
    assert in_dlq(stack) == []
    assert stack.client.dead_letters("email") == []


# The CLI


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", stack.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(stack.settings.queues))
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUES", json.dumps(stack.settings.dead_letter_queues))
    return stack


def test_cli_list_and_peek(env: Stack, three: Runs) -> None:
    # When the DLQ is listed as a table and as JSON
    table = runner.invoke(app, ["dlq", "list", "email"])
    listed = runner.invoke(app, ["dlq", "list", "email", "--json", "--limit", "2"])
    # Then both show the dead letters, and all are still in the DLQ
    assert table.exit_code == 0, table.output
    assert "a-1" in table.output and "partner said no" in table.output
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert len(rows) == 2
    assert len(in_dlq(env)) == 3
    # When one is peeked at by its message id
    peeked = runner.invoke(app, ["dlq", "peek", "email", rows[0]["message_id"]])
    # Then its body (masked) and attributes are shown as JSON
    assert peeked.exit_code == 0, peeked.output
    shown = json.loads(peeked.output)
    assert shown["body"]["id"] == rows[0]["job_id"]
    assert shown["body"]["payload"]["to"] == "a***@e***.com"
    assert "jobkit-reason" in shown["attributes"]
    # and an unknown message id is one line, exit 1
    missing = runner.invoke(app, ["dlq", "peek", "email", "nope"])
    assert missing.exit_code == 1
    assert "no message 'nope'" in missing.output
    assert "Traceback" not in missing.output


def test_cli_redrive_a_subset_dry_and_for_real(env: Stack, three: Runs) -> None:
    dry = runner.invoke(app, ["dlq", "redrive", "email", "--reason", "partner", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run: 2 of 3" in dry.output
    assert receive_now(env) == []
    moved = runner.invoke(app, ["dlq", "redrive", "email", "--id", "a-1", "--id", "a-2"])
    assert moved.exit_code == 0, moved.output
    assert "moved 2 messages back to email; 1 left" in moved.output
    assert dlq_job_ids(env) == ["b-1"]


def test_cli_redrive_refuses_an_unknown_type_or_queue(env: Stack, three: Runs) -> None:
    bad_type = runner.invoke(app, ["dlq", "redrive", "email", "--type", "email.nope"])
    assert bad_type.exit_code == 2
    assert "unknown job type" in bad_type.output
    bad_queue = runner.invoke(app, ["dlq", "list", "nope"])
    assert bad_queue.exit_code == 2
    assert "unknown queue 'nope'" in bad_queue.output
    assert len(in_dlq(env)) == 3


def test_cli_purge_asks_first(env: Stack, three: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no terminal to ask on: the purge is refused and nothing is deleted
    refused = runner.invoke(app, ["dlq", "purge", "email"])
    assert refused.exit_code == 2
    assert "--yes" in refused.output
    assert len(in_dlq(env)) == 3
    # Given a terminal: a "no" keeps the dead letters
    monkeypatch.setattr(dlq_commands, "_interactive", lambda: True)
    declined = runner.invoke(app, ["dlq", "purge", "email"], input="n\n")
    assert declined.exit_code == 1
    assert len(in_dlq(env)) == 3
    # and with --yes the DLQ is purged
    done = runner.invoke(app, ["dlq", "purge", "email", "--yes"])
    assert done.exit_code == 0, done.output
    assert in_dlq(env) == []
