"""Retry and cancel in bulk, by filter, after a dry run: the library and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from typer.testing import CliRunner

from jobkit import JobState, PermanentError
from jobkit_tools.cli import app
from tests.conftest import Stack

from .test_core_support import ECHO, OTHER, deliver, make_worker, payload, receive_now

runner = CliRunner()


def fail(p: object, ctx: object) -> None:
    raise PermanentError("no")


@pytest.fixture
def failed(stack: Stack) -> Stack:
    """Three failed jobs: two `ECHO` ones named `bill-*`, one `OTHER`."""
    stack.client.enqueue(ECHO, payload(1), job_id="bill-1")
    stack.client.enqueue(ECHO, payload(2), job_id="bill-2")
    stack.client.enqueue(OTHER, payload(3), job_id="ship-1")
    worker = make_worker(stack, fail)
    worker.processor(OTHER)(fail)
    deliver(stack, worker, receive_now(stack))
    return stack


def test_a_dry_run_says_which_and_changes_nothing_then_the_retry_does(failed: Stack) -> None:
    # When a bulk retry of one type is only tried
    dry = failed.client.retry_many(ECHO, dry_run=True)
    # Then it names those two, and they are still failed
    assert sorted(dry.matched) == ["bill-1", "bill-2"] and dry.done == [] and dry.dry_run
    assert failed.client.get_job("bill-1").state is JobState.FAILED  # type: ignore[union-attr]
    # When it is done for real
    done = failed.client.retry_many(ECHO)
    # Then those two are queued again with fresh attempts, and the other one is untouched
    assert sorted(done.done) == ["bill-1", "bill-2"] and done.failed == []
    states = {i: failed.client.get_job(i).state for i in ("bill-1", "bill-2", "ship-1")}  # type: ignore[union-attr]
    assert states == {
        "bill-1": JobState.QUEUED,
        "bill-2": JobState.QUEUED,
        "ship-1": JobState.FAILED,
    }


def test_bulk_cancel_reaches_scheduled_jobs_by_id_prefix(stack: Stack) -> None:
    # Given two jobs due in an hour, and one due now
    stack.client.enqueue(ECHO, payload(1), job_id="later-1", delay=600)
    stack.client.enqueue(ECHO, payload(2), job_id="later-2", delay=600)
    stack.client.enqueue(ECHO, payload(3), job_id="now-1")
    # When the scheduled ones named `later-` are cancelled in bulk
    result = stack.client.cancel_many(id_prefix="later-")
    # Then both are cancelled, and the other is not touched
    assert sorted(result.done) == ["later-1", "later-2"]
    assert stack.client.get_job("later-1").state is JobState.CANCELLED  # type: ignore[union-attr]
    assert stack.client.get_job("now-1").state is JobState.QUEUED  # type: ignore[union-attr]


@pytest.fixture
def cli_env(failed: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("JOBKIT_TABLE", failed.settings.table)
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", failed.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(failed.settings.queues))
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUES", json.dumps(failed.settings.dead_letter_queues))
    monkeypatch.setenv("JOBKIT_TYPES", "tests.integration.test_core_support")
    return failed


def test_the_cli_retries_in_bulk_after_a_dry_run_and_a_confirmation(cli_env: Stack) -> None:
    # When a bulk retry is only tried, Then it lists the jobs and changes nothing
    dry = runner.invoke(app, ["retry", "--id-prefix", "bill-", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "bill-1" in dry.output and "bill-2" in dry.output and "would retry 2" in dry.output
    assert cli_env.client.get_job("bill-1").state is JobState.FAILED  # type: ignore[union-attr]
    # When it is asked for without confirming (no terminal), Then nothing is done, exit 2
    refused = runner.invoke(app, ["retry", "--id-prefix", "bill-"], input="n\n")
    assert refused.exit_code == 2
    assert "not confirmed" in refused.output
    assert cli_env.client.get_job("bill-1").state is JobState.FAILED  # type: ignore[union-attr]
    # When it is confirmed, Then both are retried
    done = runner.invoke(app, ["retry", "--id-prefix", "bill-", "--yes"])
    assert done.exit_code == 0, done.output
    assert "2 retried, 0 refused" in done.output
    assert cli_env.client.get_job("bill-2").state is JobState.QUEUED  # type: ignore[union-attr]


def test_a_bulk_action_without_an_id_or_a_filter_is_refused(cli_env: Stack) -> None:
    for command in ("retry", "cancel"):
        result = runner.invoke(app, [command])
        assert result.exit_code == 2
        assert "--all" in result.output
        assert "Traceback" not in result.output


HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def failed_hours_apart(stack: Stack) -> Stack:
    """Two failed `ECHO` jobs: `old-1` enqueued three hours ago, `new-1` an hour ago (SQS
    keeps a message for days, so not long before now)."""
    for job_id, hours in (("old-1", 3), ("new-1", 1)):
        with time_machine.travel(HOUR - timedelta(hours=hours), tick=False):
            stack.client.enqueue(ECHO, payload(hours), job_id=job_id)
    deliver(stack, make_worker(stack, fail), receive_now(stack))
    return stack


def test_bulk_retry_and_cancel_honour_the_created_time_bounds(failed_hours_apart: Stack) -> None:
    client = failed_hours_apart.client
    noon = HOUR - timedelta(hours=2)  # between the two
    # When failed jobs enqueued after that moment are retried (a dry run)
    after = client.retry_many(created_after=noon, dry_run=True)
    # And those enqueued before it
    before = client.retry_many(created_before=noon, dry_run=True)
    # Then each names only the job on its side of the bound
    assert (after.matched, before.matched) == (["new-1"], ["old-1"])
    # When the job enqueued after noon is retried for real, and then cancelled in bulk
    assert client.retry_many(created_after=noon).done == ["new-1"]
    assert client.cancel_many(created_before=noon, dry_run=True).matched == []
    # Then only that job moved
    assert client.get_job("new-1").state is JobState.QUEUED  # type: ignore[union-attr]
    assert client.get_job("old-1").state is JobState.FAILED  # type: ignore[union-attr]


def test_the_cli_bulk_retry_takes_since_and_until(
    failed_hours_apart: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBKIT_TABLE", failed_hours_apart.settings.table)
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", failed_hours_apart.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(failed_hours_apart.settings.queues))
    monkeypatch.setenv("JOBKIT_TYPES", "tests.integration.test_core_support")
    # When the bulk retry is bounded by enqueue time only (naive times are UTC)
    between = (HOUR - timedelta(hours=2)).replace(tzinfo=None).isoformat()
    since = runner.invoke(app, ["retry", "--since", between, "--dry-run"])
    until = runner.invoke(app, ["retry", "--until", between, "--dry-run"])
    # Then each is a filter on its own, and names the job on its side
    assert since.exit_code == 0 and until.exit_code == 0, since.output + until.output
    assert "new-1" in since.output and "old-1" not in since.output
    assert "old-1" in until.output and "new-1" not in until.output
