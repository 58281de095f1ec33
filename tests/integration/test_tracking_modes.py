"""Tracking modes against moto: what each mode writes to the job log (README "Tracking
modes"), and what a producer or operator can still see of a `light` or `failures` job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from jobkit import (
    EnqueueError,
    EnqueueRequest,
    Guarantee,
    JobNotFoundError,
    JobState,
    JobType,
    PermanentError,
    Tracking,
    TransientError,
)
from jobkit.client import Jobkit
from jobkit.errors import NOT_IN_LOG_HINT
from jobkit.jobs import Backoff
from jobkit.models import Job
from jobkit.worker import JobContext, Worker
from jobkit_tools.cli import app
from jobkit_tools.testing import Harness
from tests.conftest import Stack

from .test_cli import env  # noqa: F401 (a fixture: the stack's settings in the environment)
from .test_core_support import (
    ECHO,
    Calls,
    EchoPayload,
    Runs,
    body_of,
    dead_letters,
    deliver,
    make_visible,
    payload,
    reason_of,
    receive_now,
    record_calls,
)


def _declare(tracking: Tracking, guarantee: Guarantee = Guarantee.AT_LEAST_ONCE) -> JobType:
    return JobType(
        f"test.tracking.{tracking.value}.{guarantee.value}",
        EchoPayload,
        queue="email",
        max_attempts=3,
        backoff=Backoff(base=0.01, cap=0.05),
        timeout=5,
        guarantee=guarantee,
        tracking=tracking,
    )


LIGHT = _declare(Tracking.LIGHT)
LIGHT_AT_MOST_ONCE = _declare(Tracking.LIGHT, Guarantee.AT_MOST_ONCE)
FAILURES = _declare(Tracking.FAILURES)
BY_MODE = {Tracking.FULL: ECHO, Tracking.LIGHT: LIGHT, Tracking.FAILURES: FAILURES}
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
READS = ("GetItem", "BatchGetItem", "Query", "Scan")


def worker_for(stack: Stack, runs: Any) -> Worker:
    worker = Worker("email", stack.worker_settings())
    for job_type in (ECHO, LIGHT, LIGHT_AT_MOST_ONCE, FAILURES):
        worker.processor(job_type)(runs)
    return worker


def log_calls(stack: Stack, calls: Calls, ops: tuple[str, ...]) -> list[str]:
    """The DynamoDB calls of `ops` made on the job log table (not on any other table)."""
    return [
        op
        for op in ops
        for params in calls.params.get(op, [])
        if params.get("TableName") == stack.settings.table
    ]


def items(stack: Stack) -> list[dict[str, Any]]:
    return list(boto3.client("dynamodb").scan(TableName=stack.settings.table)["Items"])


def stored(stack: Stack, job_id: str) -> Job:
    job = stack.client.get_job(job_id)
    assert job is not None, f"{job_id} is not in the log"
    return job


# -- what each mode costs on the happy path -------------------------------------------------


@pytest.mark.parametrize(
    ("tracking", "at_enqueue", "at_run", "reads"),
    [
        (Tracking.FULL, ["PutItem"], ["UpdateItem", "UpdateItem"], []),
        (Tracking.LIGHT, [], ["PutItem", "UpdateItem"], []),
        (Tracking.FAILURES, [], [], ["GetItem"]),
    ],
    ids=lambda v: v.value if isinstance(v, Tracking) else None,
)
def test_happy_path_requests_and_log_writes_per_mode(
    stack: Stack, tracking: Tracking, at_enqueue: list[str], at_run: list[str], reads: list[str]
) -> None:
    # Given a job type with this tracking mode
    job_type = BY_MODE[tracking]
    calls = record_calls()
    # When a job is enqueued
    stack.client.enqueue(job_type, payload(1), job_id="happy")
    # Then the producer writes what the mode says (and sends one message either way)
    assert log_calls(stack, calls, WRITES) == at_enqueue
    assert log_calls(stack, calls, READS) == []
    assert calls.ops["SendMessage"] == 1
    # When a worker runs it to success
    calls.reset()
    runs = Runs()
    assert deliver(stack, worker_for(stack, runs), receive_now(stack)) == []
    # Then it ran once, and the worker's log requests are the mode's: full claims and
    # records (2 writes), light creates in its claim and records (2 writes), failures only
    # reads, eventually consistent (0 writes)
    assert [c[1:] for c in runs.calls] == [("happy", 1)]
    assert sorted(log_calls(stack, calls, WRITES)) == sorted(at_run)
    assert log_calls(stack, calls, READS) == reads
    assert all(p.get("ConsistentRead") is False for p in calls.params.get("GetItem", []))
    # and the job is succeeded in the log, or (failures) not in it at all
    if tracking is Tracking.FAILURES:
        assert items(stack) == []
    else:
        job = stored(stack, "happy")
        assert (job.state, job.attempts, job.result) == (
            JobState.SUCCEEDED,
            1,
            {"echo": 1, "attempt": 1},
        )


def test_enqueue_many_writes_only_full_jobs_and_counts_every_other_request_created(
    stack: Stack,
) -> None:
    # Given a job of each mode, one id twice among the light ones (in two batches)
    stack.client.enqueue_many([EnqueueRequest(LIGHT, payload(0), job_id="many-light")])
    calls = record_calls()
    # When they are enqueued in one batch
    result = stack.client.enqueue_many(
        [
            EnqueueRequest(ECHO, payload(1), job_id="many-full"),
            EnqueueRequest(LIGHT, payload(2), job_id="many-light"),
            EnqueueRequest(FAILURES, payload(3), job_id="many-failures"),
        ]
    )
    # Then only the full job is written; every request counts as created and is sent,
    # the light id seen before included (the producer cannot tell: the claim drops it)
    assert log_calls(stack, calls, WRITES) == ["PutItem"]
    assert [(o.job_id, o.created, o.ok) for o in result.outcomes] == [
        ("many-full", True, True),
        ("many-light", True, True),
        ("many-failures", True, True),
    ]
    assert [j.state for j in result.created] == [JobState.QUEUED] * 3
    assert sorted(body_of(m)["id"] for m in receive_now(stack)) == [
        "many-failures",
        "many-full",
        "many-light",
        "many-light",
    ]
    assert [plain_id(i) for i in items(stack)] == ["many-full"]


def plain_id(item: dict[str, Any]) -> str:
    return str(item["pk"]["S"])


# -- light ------------------------------------------------------------------------------------


def test_duplicate_delivery_of_a_light_job_runs_it_once(stack: Stack) -> None:
    # Given a light job enqueued twice under one id: two messages, both "created"
    first = stack.client.enqueue(LIGHT, payload(1), job_id="light-dup")
    again = stack.client.enqueue(LIGHT, payload(1), job_id="light-dup")
    assert first.id == again.id == "light-dup"
    messages = receive_now(stack)
    assert len(messages) == 2
    runs = Runs()
    # When both are delivered
    failures = deliver(stack, worker_for(stack, runs), messages)
    # Then the job ran once (the second claim found it finished), both messages are done
    assert failures == []
    assert [c[1:] for c in runs.calls] == [("light-dup", 1)]
    job = stored(stack, "light-dup")
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert receive_now(stack) == [] and dead_letters(stack) == []


def test_a_light_job_is_in_the_log_from_its_claim_not_before(stack: Stack) -> None:
    # Given a light job just enqueued
    stack.client.enqueue(LIGHT, payload(), job_id="light-seen")
    # Then the log does not have it: get_job says None, cancel cannot reach it
    assert stack.client.get_job("light-seen") is None
    with pytest.raises(JobNotFoundError, match="tracking 'light' or 'failures'"):
        stack.client.cancel("light-seen")
    seen: list[tuple[JobState, int]] = []

    def look(p: EchoPayload, ctx: JobContext) -> str:
        job = stored(stack, ctx.job_id)
        seen.append((job.state, job.attempts))
        return "done"

    # When a worker claims and runs it
    assert deliver(stack, worker_for(stack, look), receive_now(stack)) == []
    # Then it is in the log, running, while it runs, and succeeded after
    assert seen == [(JobState.RUNNING, 1)]
    job = stored(stack, "light-seen")
    assert (job.state, job.type, job.payload) == (JobState.SUCCEEDED, LIGHT.name, payload())


def test_a_light_at_most_once_job_is_claimed_before_it_runs_and_never_run_again(
    stack: Stack,
) -> None:
    # Given a light at_most_once job whose first delivery failed with its outcome unknown
    stack.client.enqueue(LIGHT_AT_MOST_ONCE, payload(), job_id="light-amo")
    runs = Runs([RuntimeError("connection reset")])
    worker = worker_for(stack, runs)
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then it is failed as outcome unknown and dead-lettered, not retried
    job = stored(stack, "light-amo")
    assert job.state == JobState.FAILED
    assert job.error is not None and job.error.startswith("outcome unknown")
    assert len(dead_letters(stack)) == 1
    # and a duplicate of its message does not run it again
    stack.client.enqueue(LIGHT_AT_MOST_ONCE, payload(), job_id="light-amo")
    assert deliver(stack, worker, receive_now(stack)) == []
    assert len(runs.calls) == 1


def test_a_light_job_whose_message_cannot_be_sent_is_an_error_and_not_logged(
    stack: Stack,
) -> None:
    # Given a queue URL that leads nowhere
    client = Jobkit(stack.settings.model_copy(update={"queues": {"email": stack.queue_url + "-x"}}))
    calls = record_calls()
    # When a light job is enqueued, Then the caller gets the error
    with pytest.raises(EnqueueError, match="could not send"):
        client.enqueue(LIGHT, payload(), job_id="light-unsent")
    # and nothing is written: there is no item to mark failed
    assert log_calls(stack, calls, WRITES) == []
    assert items(stack) == []


# -- failures ---------------------------------------------------------------------------------


def test_a_failures_job_that_succeeds_leaves_no_item(stack: Stack) -> None:
    # Given a failures job
    stack.client.enqueue(FAILURES, payload(7), job_id="quiet")
    runs = Runs()
    # When it runs to success
    assert deliver(stack, worker_for(stack, runs), receive_now(stack)) == []
    # Then it ran once as attempt 1, its message is gone, and the log has no trace of it
    assert [c[1:] for c in runs.calls] == [("quiet", 1)]
    assert receive_now(stack) == [] and dead_letters(stack) == []
    assert items(stack) == []
    assert stack.client.get_job("quiet") is None


def test_a_failures_job_that_fails_once_then_succeeds_is_logged_with_two_attempts(
    stack: Stack,
) -> None:
    # Given a failures job whose first attempt fails transiently
    stack.client.enqueue(FAILURES, payload(), job_id="flaky")
    runs = Runs([TransientError("partner busy")])
    worker = worker_for(stack, runs)
    messages = receive_now(stack)
    # When it is delivered
    failures = deliver(stack, worker, messages)
    # Then the failure created its item: retrying, attempt 1 counted, message handed back
    assert failures == [messages[0]["MessageId"]]
    job = stored(stack, "flaky")
    assert (job.state, job.attempts, job.max_attempts) == (JobState.RETRYING, 1, 3)
    assert job.error is not None and "partner busy" in job.error
    # When it comes back after its backoff and succeeds
    make_visible(stack, messages)
    calls = record_calls()
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then it was read (consistently: the message was seen before, its item may be a moment
    # old), claimed and recorded like a full job: succeeded with attempts 2
    assert log_calls(stack, calls, READS) == ["GetItem"]
    assert calls.params["GetItem"][0]["ConsistentRead"] is True
    assert log_calls(stack, calls, WRITES) == ["UpdateItem", "UpdateItem"]
    job = stored(stack, "flaky")
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
    assert [c[2] for c in runs.calls] == [1, 2]


def test_a_failures_job_that_fails_permanently_is_failed_and_dead_lettered(
    stack: Stack,
) -> None:
    # Given a failures job whose processor fails permanently
    stack.client.enqueue(FAILURES, payload(), job_id="doomed")
    runs = Runs([PermanentError("no such account")])
    # When it is delivered
    assert deliver(stack, worker_for(stack, runs), receive_now(stack)) == []
    # Then the log has it failed with the reason, its dead letter sent (no longer due)
    job = stored(stack, "doomed")
    assert (job.state, job.attempts, job.dead_letter_due) == (JobState.FAILED, 1, False)
    assert job.error == "no such account"
    (dead,) = dead_letters(stack)
    assert body_of(dead)["id"] == "doomed"
    assert reason_of(dead) == "no such account"
    # and a duplicate delivery of the failed job does not run it again
    stack.client.enqueue(FAILURES, payload(), job_id="doomed")
    assert deliver(stack, worker_for(stack, runs), receive_now(stack)) == []
    assert len(runs.calls) == 1


def test_a_failures_job_honours_max_attempts(stack: Stack) -> None:
    # Given a failures job (3 attempts) that fails transiently every time
    stack.client.enqueue(FAILURES, payload(), job_id="stubborn")
    assert items(stack) == []  # not written at enqueue
    runs = Runs([TransientError(f"busy {i}") for i in range(5)])
    worker = worker_for(stack, runs)
    # When it is delivered until it stops coming back
    for _ in range(5):
        messages = receive_now(stack)
        if not deliver(stack, worker, messages):
            break  # done with: not handed back for another attempt
        make_visible(stack, messages)
    # Then it ran 3 times, counted from the item its first failure wrote, and failed
    assert [c[2] for c in runs.calls] == [1, 2, 3]
    job = stored(stack, "stubborn")
    assert (job.state, job.attempts) == (JobState.FAILED, 3)
    assert job.error is not None and job.error.startswith("attempts exhausted (3)")
    assert len(dead_letters(stack)) == 1


def test_a_cancelled_failures_job_is_not_run(stack: Stack) -> None:
    # Given a failures job that failed once (so it is in the log) and was then cancelled
    stack.client.enqueue(FAILURES, payload(), job_id="called-off")
    with pytest.raises(JobNotFoundError):
        stack.client.cancel("called-off")  # not in the log before it fails
    runs = Runs([TransientError("busy")])
    worker = worker_for(stack, runs)
    messages = receive_now(stack)
    deliver(stack, worker, messages)
    assert stack.client.cancel("called-off").state == JobState.CANCELLED
    # When its message comes back
    make_visible(stack, messages)
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then it did not run again
    assert len(runs.calls) == 1
    assert stored(stack, "called-off").state == JobState.CANCELLED


# -- not found --------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["cancel", "run_now", "retry"])
def test_a_job_not_in_the_log_says_why_it_may_not_be_there(stack: Stack, call: str) -> None:
    # Given an id the log does not have, When an operator call looks for it
    with pytest.raises(JobNotFoundError) as caught:
        getattr(stack.client, call)("not-there")
    # Then the error names the id and says light and failures jobs are not logged until
    # they run (and a failures job that succeeded never is)
    message = str(caught.value)
    assert message.startswith("no job 'not-there' in the job log")
    assert message.endswith(NOT_IN_LOG_HINT)
    assert "succeeded at once never is" in message


def test_cli_status_of_a_job_not_in_the_log_says_why(env: Stack) -> None:  # noqa: F811
    # Given a failures job that succeeded (so it is not in the log)
    env.client.enqueue(FAILURES, payload(), job_id="gone")
    deliver(env, worker_for(env, Runs()), receive_now(env))
    # When its status is asked
    result = CliRunner().invoke(app, ["status", "gone"])
    # Then it is exit code 1 and one line that says why it may not be there
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "no job 'gone' in the job log" in line
    assert "tracking 'light' or 'failures'" in line
    assert "succeeded at once never is" in line


# -- on the testing harness (virtual clock) ---------------------------------------------------

HARNESS_QUEUE = "tracking"
H_LIGHT = JobType(
    "test.tracking.harness_light",
    EchoPayload,
    queue=HARNESS_QUEUE,
    backoff=Backoff(10, 300),
    timeout=10,
    tracking=Tracking.LIGHT,
)
H_FAILURES = JobType(
    "test.tracking.harness_failures",
    EchoPayload,
    queue=HARNESS_QUEUE,
    backoff=Backoff(10, 300),
    timeout=10,
    tracking=Tracking.FAILURES,
)


def test_light_and_failures_jobs_delayed_past_15_minutes_run_on_the_harness(
    jobkit_harness: Harness,
) -> None:
    # Given a light and a failures job due in two hours (Scheduler), the failures one
    # failing once
    runs = Runs([TransientError("busy")])
    worker = Worker(HARNESS_QUEUE)
    worker.processor(H_LIGHT)(runs)
    worker.processor(H_FAILURES)(runs)
    jobkit_harness.register(worker)
    client = jobkit_harness.client
    for job_type, job_id in ((H_FAILURES, "h-failures"), (H_LIGHT, "h-light")):
        job = client.enqueue(job_type, payload(), job_id=job_id, delay=timedelta(hours=2))
        assert job.state == JobState.SCHEDULED
    # Then neither is in the log before it runs
    assert client.get_job("h-light") is None and client.get_job("h-failures") is None
    # When the clock runs until nothing is left to do
    jobkit_harness.run_until_idle()
    # Then the light job succeeded once, and the failures job succeeded on its second attempt
    assert (jobkit_harness.job("h-light").state, jobkit_harness.job("h-light").attempts) == (
        JobState.SUCCEEDED,
        1,
    )
    retried = jobkit_harness.job("h-failures")
    assert (retried.state, retried.attempts) == (JobState.SUCCEEDED, 2)
    assert sorted(c[1:] for c in runs.calls) == [
        ("h-failures", 1),
        ("h-failures", 2),
        ("h-light", 1),
    ]
