"""The queue overview (`Jobkit.queue_overview`, `Jobkit.state_counts`) and `jobkit queues`,
against the stack's resources in moto."""

from __future__ import annotations

import json

import boto3
import pytest
from typer.testing import CliRunner

from jobkit import PermanentError, TransientError
from jobkit.client import JobCounts, Jobkit, QueueOverview
from jobkit.errors import ConfigurationError, InvalidRequestError
from jobkit_tools.cli import app
from tests.conftest import Stack

from .test_core_support import ECHO, Runs, deliver, make_worker, payload, receive_now, record_calls

runner = CliRunner()

EXPECTED_EMAIL = QueueOverview("email", waiting=2, in_flight=2, delayed=1, dead_letters=1)
EXPECTED_COUNTS = JobCounts(scheduled=1, retrying=1, failed=1, cancelled=1)


def run_once(stack: Stack, job_id: str, error: BaseException) -> None:
    """Enqueue a job and have the real worker run it once, failing with `error`."""
    stack.client.enqueue(ECHO, payload(), job_id=job_id)
    deliver(stack, make_worker(stack, Runs([error])), receive_now(stack))


@pytest.fixture
def busy(stack: Stack) -> Stack:
    """The email queue with one job in each counted state and messages in each SQS count:
    a failed job (its dead letter in the DLQ), a retrying one (its message hidden for its
    5-minute backoff), a scheduled one (its message delayed by SQS), and three queued (one
    of them then cancelled), of whose messages a consumer has received one (in flight)."""
    run_once(stack, "fails", PermanentError("no such account"))
    run_once(stack, "flaky", TransientError("throttled", retry_after=300))
    client = stack.client
    client.enqueue(ECHO, payload(), job_id="soon", delay=600)
    for job_id in ("w1", "w2", "w3"):
        client.enqueue(ECHO, payload(), job_id=job_id)
    client.cancel("w3")  # its message stays in the queue until a worker drops it
    boto3.client("sqs").receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60
    )
    return stack


@pytest.fixture
def env(busy: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("JOBKIT_TABLE", busy.settings.table)
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", busy.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(busy.settings.queues))
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUES", json.dumps(busy.settings.dead_letter_queues))
    return busy


def test_overview_shows_waiting_in_flight_delayed_and_dead_letters(busy: Stack) -> None:
    # Given a queue with messages waiting, in flight, delayed and dead-lettered
    calls = record_calls()
    # When the overview of the declared queues is read
    found = busy.client.queue_overview()
    # Then the email queue (the only one the settings locate) shows each count
    assert found == [EXPECTED_EMAIL]
    # from one GetQueueAttributes for the queue and one for its DLQ, and nothing else
    assert calls.ops["GetQueueAttributes"] == 2
    assert sum(calls.ops.values()) == 2


def test_state_counts_count_the_sparse_index_without_scanning_or_reading_items(
    busy: Stack,
) -> None:
    # Given jobs scheduled, retrying, failed and cancelled (made by the real worker)
    calls = record_calls()
    # When the jobs are counted by state
    counts = busy.client.state_counts()
    # Then each state has its job
    assert counts == EXPECTED_COUNTS
    # from Select=COUNT Queries of the by_state index (8 shards a state), never a Scan
    assert calls.ops["Scan"] == 0
    assert calls.ops["Query"] == 4 * 8
    assert all(p["Select"] == "COUNT" for p in calls.params["Query"])
    assert all(p["IndexName"] == "by_state" for p in calls.params["Query"])
    assert sum(calls.ops.values()) == calls.ops["Query"]


def test_a_queue_without_dead_letter_queue_has_no_dead_letter_count(stack: Stack) -> None:
    # Given settings that name the queue but no dead-letter queue
    client = Jobkit(stack.settings.model_copy(update={"dead_letter_queues": {}}))
    # When its overview is read
    (found,) = client.queue_overview(["email"])
    # Then the dead-letter count is None, not 0
    assert found.dead_letters is None
    assert found.waiting == 0


def test_unknown_and_missing_queues_are_clear_errors(stack: Stack) -> None:
    # Given a name no job type declares and the settings do not know
    # When its overview is asked for, then it is bad input naming it
    with pytest.raises(InvalidRequestError, match="unknown queue 'nope'"):
        stack.client.queue_overview(["nope"])
    # Given a queue the settings name but SQS does not have
    url = stack.queue_url.replace("/email", "/ghost")
    client = Jobkit(stack.settings.model_copy(update={"queues": {"ghost": url}}))
    # Then it is a configuration error naming it, not a botocore traceback
    with pytest.raises(ConfigurationError, match="queue 'ghost' does not exist"):
        client.queue_overview(["ghost"])


def test_cli_queues_prints_the_table_and_the_counts_by_state(env: Stack) -> None:
    # When `jobkit queues` runs
    result = runner.invoke(app, ["queues"])
    # Then it shows the email queue's row and a line of job counts
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "email" in line)
    # (no metric datapoint for its oldest message, and no worker's event source mapping reads
    # the queue in this stack: "-")
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["email", "2", "2", "1", "-", "1", "-"]
    assert "jobs: scheduled 1, retrying 1, failed 1, cancelled 1" in result.output


def test_cli_queues_json_is_one_object_of_queues_and_states(env: Stack) -> None:
    # When `jobkit queues --json` runs for the email queue
    result = runner.invoke(app, ["queues", "--json", "--queue", "email"])
    # Then it prints the same figures as one JSON object
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "queues": [
            {
                "queue": "email",
                "waiting": 2,
                "in_flight": 2,
                "delayed": 1,
                "dead_letters": 1,
                "paused": None,
                "oldest_age_seconds": None,
            }
        ],
        "states": {"scheduled": 1, "retrying": 1, "failed": 1, "cancelled": 1},
    }


def test_cli_unknown_queue_exits_2_with_one_line(env: Stack) -> None:
    # When `jobkit queues --queue nope` runs
    result = runner.invoke(app, ["queues", "--queue", "nope"])
    # Then it is bad input: exit 2, one line naming the queue, no traceback
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "unknown queue 'nope'" in result.output
    assert "Traceback" not in result.output
