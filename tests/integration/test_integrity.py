"""The job log is the one source of truth on every failure path: stray and disagreeing
messages, concurrent and late writes, stale attempts, attempts that never finish."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from jobkit import EnqueueRequest, JobState, PermanentError, TransientError
from jobkit.jobs import Backoff, Guarantee, JobType
from jobkit.models import Envelope, Job, utcnow
from jobkit.store import JobLog
from jobkit.worker import JobContext, Worker
from jobkit_tools.testing import Harness
from tests.conftest import Stack, sqs_event

from .test_core_support import (
    ECHO,
    OTHER,
    EchoPayload,
    Runs,
    body_of,
    dead_letters,
    deliver,
    make_worker,
    payload,
    reason_of,
    receive_now,
    record_calls,
)

ONCE = JobType(
    "test.integrity.at_most_once",
    EchoPayload,
    queue="email",
    max_attempts=3,
    backoff=Backoff(base=0.01, cap=0.05),
    timeout=5,
    guarantee=Guarantee.AT_MOST_ONCE,
)


def send_raw(stack: Stack, job_id: str, job_type: str, body: dict[str, Any]) -> None:
    """What a foreign producer (or an adversary) can put on the queue."""
    envelope = Envelope(id=job_id, type=job_type, payload=body, enqueued_at=utcnow())
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=envelope.to_json())


def only(stack: Stack, job_id: str) -> Job:
    job = stack.client.get_job(job_id)
    assert job is not None
    return job


def deliver_by_id(stack: Stack, worker: Worker, job_type: str) -> list[str]:
    """Deliver the visible messages of one job type, leaving the others in the queue."""
    picked = [m for m in receive_now(stack) if body_of(m)["type"] == job_type]
    assert picked, f"no message of {job_type} to deliver"
    return deliver(stack, worker, picked)


# -- 1. the worker runs the job the log holds ------------------------------------------------


def test_a_stray_message_of_an_unknown_type_never_touches_the_job_with_its_id(
    stack: Stack,
) -> None:
    # Given a queued job, and a raw message of a type nobody hosts that carries its id
    stack.client.enqueue(ECHO, payload(1), job_id="victim")
    before = only(stack, "victim")
    send_raw(stack, "victim", "test.nobody_hosts_this", {"x": 1})
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the worker gets the stray message first
    assert deliver_by_id(stack, worker, "test.nobody_hosts_this") == []
    # Then the job is exactly as it was, and the stray is dead-lettered with why
    assert only(stack, "victim") == before
    (letter,) = dead_letters(stack)
    assert "no processor for job type 'test.nobody_hosts_this'" in reason_of(letter)
    assert "left as is" in reason_of(letter)
    assert "dead_letter" not in body_of(letter)  # not marked: a redrive cannot revive it
    # And when its real message comes, the job runs
    assert deliver(stack, worker, receive_now(stack)) == []
    assert runs.calls == [(1, "victim", 1)]
    assert only(stack, "victim").state == JobState.SUCCEEDED


def test_a_message_of_an_unknown_type_with_no_job_is_logged_as_a_failed_job(
    stack: Stack,
) -> None:
    # Given a raw message of a type nobody hosts, whose id the log does not know
    send_raw(stack, "ghost", "test.nobody_hosts_this", {"x": 1})
    # When a worker gets it
    assert deliver(stack, make_worker(stack, Runs()), receive_now(stack)) == []
    # Then the log has a failed job with the reason, and the DLQ the marked message
    job = only(stack, "ghost")
    assert (job.state, job.type, job.queue) == (JobState.FAILED, "test.nobody_hosts_this", "email")
    assert job.error is not None and "no processor for job type" in job.error
    (letter,) = dead_letters(stack)
    assert reason_of(letter) == job.error
    assert body_of(letter)["dead_letter"]["generation"] == 0
    assert job.id in [j.id for j in stack.client.list_jobs(state="failed")]


def test_a_message_of_another_queues_type_never_touches_that_job(stack: Stack) -> None:
    # Given a job of the email queue, and a copy of its message that reached another queue's
    # worker (which hosts none of the email types)
    stack.client.enqueue(ECHO, payload(2), job_id="elsewhere")
    before = only(stack, "elsewhere")
    reports = Worker("reports", stack.worker_settings())
    # When that worker gets the copy
    assert deliver(stack, reports, receive_now(stack)) == []
    # Then the email job is untouched and the copy is dead-lettered, unmarked
    assert only(stack, "elsewhere") == before
    (letter,) = dead_letters(stack)
    assert "on queue 'reports'" in reason_of(letter) and "left as is" in reason_of(letter)
    assert "dead_letter" not in body_of(letter)


@pytest.mark.parametrize(
    ("stray_type", "stray_payload"),
    [(ECHO.name, payload(99)), (OTHER.name, payload(1))],
    ids=["other-payload", "other-type"],
)
def test_an_envelope_that_disagrees_with_the_log_is_dead_lettered_and_changes_nothing(
    stack: Stack, stray_type: str, stray_payload: dict[str, Any]
) -> None:
    # Given a queued job, and a second envelope with its id but another payload or type
    stack.client.enqueue(ECHO, payload(1), job_id="twin")
    before = only(stack, "twin")
    send_raw(stack, "twin", stray_type, stray_payload)
    runs = Runs()
    worker = make_worker(stack, runs)
    stray = [m for m in receive_now(stack) if body_of(m)["payload"] == stray_payload]
    # When the worker gets the stray envelope
    assert deliver(stack, worker, [m for m in stray if body_of(m)["type"] == stray_type]) == []
    # Then nothing ran, the log is as it was, and the stray is in the DLQ with the reason
    assert runs.calls == []
    assert only(stack, "twin") == before
    (letter,) = dead_letters(stack)
    assert reason_of(letter).startswith("message disagrees with the job log: job twin")
    # And the job's own message runs the job the log holds
    assert deliver(stack, worker, receive_now(stack)) == []
    assert runs.calls == [(1, "twin", 1)]
    done = only(stack, "twin")
    assert (done.state, done.type, done.result) == (
        JobState.SUCCEEDED,
        ECHO.name,
        {"echo": 1, "attempt": 1},
    )


# -- 2. every state change is conditional ----------------------------------------------------


def test_enqueue_many_never_overwrites_a_job_that_appeared_and_finished_meanwhile(
    stack: Stack,
) -> None:
    from jobkit import aws

    # Given a batch about to write job "raced", and another producer whose job of that id is
    # enqueued and run to success just before the batch's write reaches the log
    competitor: dict[str, Job] = {}
    started: list[bool] = []

    def run_the_competitor(**_: Any) -> None:
        if started:
            return
        started.append(True)
        competitor["enqueued"] = stack.client.enqueue(ECHO, payload(1), job_id="raced")
        deliver(stack, make_worker(stack, Runs()), receive_now(stack))
        competitor["finished"] = only(stack, "raced")

    for write in ("PutItem", "BatchWriteItem"):
        aws.dynamodb().meta.events.register(f"before-call.dynamodb.{write}", run_the_competitor)
    # When the batch writes it, with another payload
    result = stack.client.enqueue_many([EnqueueRequest(ECHO, payload(2), job_id="raced")])
    # Then the batch is handed the finished job, and the log keeps it with its result
    finished = competitor["finished"]
    assert finished.state == JobState.SUCCEEDED and finished.result is not None
    (outcome,) = result.outcomes
    assert (outcome.created, outcome.ok, outcome.job) == (False, True, finished)
    assert only(stack, "raced") == finished
    assert receive_now(stack) == []


@pytest.fixture
def serial_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies writes to one item one at a time; moto's in-process backend does
    not lock across threads, so make its writes take turns as DynamoDB's would."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in ("put_item", "update_item"):
        original = getattr(DynamoDBBackend, name)

        def serial(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, serial)


@pytest.mark.usefixtures("serial_dynamodb")
def test_concurrent_enqueue_many_of_one_id_has_exactly_one_creator(stack: Stack) -> None:
    # Given 20 producers that enqueue the same id at the same moment, each its own payload
    start = threading.Barrier(20)
    outcomes: list[Any] = [None] * 20

    def produce(n: int) -> None:
        request = EnqueueRequest(ECHO, payload(n), job_id="contested")
        start.wait()
        outcomes[n] = stack.client.enqueue_many([request]).outcomes[0]

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one was told it created the job, and everyone got that job
    creators = [n for n, o in enumerate(outcomes) if o.created]
    assert len(creators) == 1
    stored = only(stack, "contested")
    assert stored.payload == payload(creators[0])
    assert all(o.ok and o.job.payload == stored.payload for o in outcomes)
    # And one message went out
    assert [body_of(m)["payload"] for m in stack.receive(stack.queue_url)] == [stored.payload]


def test_marking_a_send_failed_never_changes_a_job_that_moved_on(stack: Stack) -> None:
    # Given a job as its sender saw it, which a worker then ran to success
    sent = stack.client.enqueue(ECHO, payload(), job_id="moved-on")
    deliver(stack, make_worker(stack, Runs()), receive_now(stack))
    log = JobLog(stack.settings.table)
    # When a late "the send failed" arrives for it
    marked = log.mark_send_failed(sent, "enqueue failed: timeout", ECHO.retention.failed)
    # Then it changes nothing
    assert marked is False
    assert only(stack, "moved-on").state == JobState.SUCCEEDED


def test_marking_a_send_failed_never_creates_a_job(stack: Stack) -> None:
    # Given a job the log does not have
    ghost = Job(
        id="never-written",
        type=ECHO.name,
        queue="email",
        state=JobState.QUEUED,
        max_attempts=3,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    # When its send is marked failed
    marked = JobLog(stack.settings.table).mark_send_failed(ghost, "x", ECHO.retention.failed)
    # Then no item appears
    assert marked is False
    assert stack.client.get_job("never-written") is None


def take_over_inside(stack: Stack, job_id: str) -> None:
    """What another attempt does while this one still runs: its lease passed, the other
    claimed the job and finished it."""
    log = JobLog(stack.settings.table)
    boto3.client("dynamodb").update_item(
        TableName=stack.settings.table,
        Key={"pk": {"S": job_id}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )
    other = log.claim(job_id, 60)
    assert other.job is not None
    assert log.succeed(job_id, other.job.attempts, "by the other", 1, ECHO.retention.succeeded)


@pytest.mark.parametrize(
    "error", [PermanentError("no such account"), TransientError("busy")], ids=["fail", "retry"]
)
def test_a_stale_attempt_records_nothing_sends_nothing_and_counts_nothing(
    stack: Stack,
    error: Exception,
    stdout: pytest.CaptureFixture[str],
) -> None:
    # Given an attempt whose job another attempt took over and finished while it ran
    stack.client.enqueue(ECHO, payload(), job_id="zombie")

    def zombie(p: Any, ctx: JobContext) -> Any:
        take_over_inside(stack, ctx.job_id)
        raise error

    worker = make_worker(stack, zombie)
    calls = record_calls()
    stdout.readouterr()
    # When the zombie's processor fails
    failures = deliver(stack, worker, receive_now(stack))
    # Then the other attempt's outcome stands, nothing went to the DLQ, the message was
    # not handed back for a retry, no failure metric went out, and one warning says so
    job = only(stack, "zombie")
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 2, "by the other")
    assert dead_letters(stack) == []
    assert failures == [] and calls.ops["ChangeMessageVisibility"] == 0
    out = stdout.readouterr().out
    assert "JobFailed" not in out and "JobRetried" not in out
    assert out.count("no longer holds the job") == 1


# -- 3. deferral never dead-letters ------------------------------------------------------------


def test_a_message_deferred_near_the_receive_limit_is_replaced_not_hidden(stack: Stack) -> None:
    # Given a job whose message has come as often as the redrive policy allows but one
    stack.client.enqueue(ECHO, payload(), job_id="patient")
    limit = 10  # template.yaml's maxReceiveCount of the email queue
    sqs = boto3.client("sqs")
    for _ in range(limit - 1):
        receive_now(stack)
    (message,) = receive_now(stack)
    assert message["Attributes"]["ApproximateReceiveCount"] == str(limit)
    worker = make_worker(stack, Runs())
    worker.admission(ECHO)(lambda p: 30.0)  # the rate limit says: not yet
    # When it is deferred once more
    failures = deliver(stack, worker, [message])
    # Then the old message is gone (done with), and a fresh copy waits out the deferral
    assert failures == []
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert dead_letters(stack) == []
    job = only(stack, "patient")
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)


# -- 4. long jobs, attempts that never finish ------------------------------------------------


def expire_lease(stack: Stack, job_id: str) -> None:
    boto3.client("dynamodb").update_item(
        TableName=stack.settings.table,
        Key={"pk": {"S": job_id}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )


def test_a_job_that_crashes_on_every_attempt_ends_failed_within_its_attempts(
    stack: Stack,
) -> None:
    # Given a 3-attempt job whose every attempt is killed mid-run (claimed, never finished)
    stack.client.enqueue(ECHO, payload(), job_id="doomed-crash")
    log = JobLog(stack.settings.table)
    for attempt in (1, 2, 3):
        claim = log.claim("doomed-crash", 60)
        assert claim.job is not None and claim.job.attempts == attempt
        expire_lease(stack, "doomed-crash")  # the killed attempt's lease runs out
    # When the message comes back once more
    runs = Runs()
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    # Then the job is failed at 3 of 3 attempts, saying the attempts crashed or timed out
    job = only(stack, "doomed-crash")
    assert (job.state, job.attempts, job.max_attempts) == (JobState.FAILED, 3, 3)
    assert job.error == (
        "attempts exhausted (3): attempt 3 did not finish (the worker crashed or timed out)"
    )
    assert runs.calls == []
    (letter,) = dead_letters(stack)
    assert reason_of(letter) == job.error


@pytest.fixture
def clock() -> Iterator[Any]:
    import time_machine

    with time_machine.travel(utcnow(), tick=True) as traveller:
        yield traveller


def test_a_job_that_keeps_heartbeating_is_never_handed_to_a_second_worker(
    stack: Stack, clock: Any
) -> None:
    # Given a job (5 s timeout) that works for 30 s, heartbeating every 4 s
    stack.client.enqueue(ECHO, payload(), job_id="long")
    (message,) = receive_now(stack)
    second: dict[str, Any] = {}
    runs: list[int] = []
    calls = record_calls()

    def long_job(p: Any, ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        for _ in range(7):
            clock.shift(4)
            ctx.heartbeat()
        # When a second copy of its message reaches another worker meanwhile
        other = make_worker(stack, lambda p, c: runs.append(c.attempt))
        second["response"] = other.handle(sqs_event([message]), None)
        return "done"

    assert deliver(stack, make_worker(stack, long_job), [message]) == []
    # Then the second worker handed it back without running it, and the job ran once
    assert second["response"]["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert runs == [1]
    job = only(stack, "long")
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 1, "done")
    # And each heartbeat kept the message hidden past the lease it extended
    hidden = [p["VisibilityTimeout"] for p in calls.params["ChangeMessageVisibility"]]
    assert hidden[:7] == [ECHO.timeout + 5 + 30] * 7


def test_without_heartbeats_a_long_job_is_taken_over_and_its_outcome_dropped(
    stack: Stack, clock: Any
) -> None:
    # Given a job (5 s timeout) that works past its lease without a heartbeat, while a second
    # copy of its message reaches another worker
    stack.client.enqueue(ECHO, payload(), job_id="silent")
    (message,) = receive_now(stack)
    runs: list[int] = []

    def silent_job(p: Any, ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            clock.shift(60)
            make_worker(stack, silent_job).handle(sqs_event([message]), None)
            ctx.heartbeat()  # too late: raises LeaseLostError
        return f"attempt {ctx.attempt}"

    deliver(stack, make_worker(stack, silent_job), [message])
    # Then the second attempt ran and its outcome is the one recorded
    assert runs == [1, 2]
    job = only(stack, "silent")
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 2, "attempt 2")


# -- 5. at-most-once job types ---------------------------------------------------------------


def make_once_worker(stack: Stack, runs: Any) -> Worker:
    worker = Worker("email", stack.worker_settings())
    worker.processor(ONCE)(runs)
    return worker


def test_an_at_most_once_job_whose_attempt_never_finished_fails_as_outcome_unknown(
    stack: Stack,
) -> None:
    # Given an at_most_once job whose first attempt was killed mid-run
    stack.client.enqueue(ONCE, payload(), job_id="once-crashed")
    log = JobLog(stack.settings.table)
    assert log.claim("once-crashed", 60).job is not None
    expire_lease(stack, "once-crashed")
    # When its message comes back
    runs = Runs()
    assert deliver(stack, make_once_worker(stack, runs), receive_now(stack)) == []
    # Then it is not run again: it failed as "outcome unknown", for a person to check
    assert runs.calls == []
    job = only(stack, "once-crashed")
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    assert job.error is not None and job.error.startswith("outcome unknown: attempt 1 did not")
    assert reason_of(dead_letters(stack)[0]) == job.error


@pytest.mark.parametrize(
    ("error", "ends"),
    [
        (TransientError("SES throttled"), JobState.RETRYING),
        (PermanentError("rejected"), JobState.FAILED),
        (RuntimeError("a bug, maybe after the send"), JobState.FAILED),
    ],
    ids=["transient-retries", "permanent-fails", "unexpected-fails"],
)
def test_an_at_most_once_job_retries_only_what_surely_did_not_happen(
    stack: Stack, error: Exception, ends: JobState
) -> None:
    stack.client.enqueue(ONCE, payload(), job_id="once")
    deliver(stack, make_once_worker(stack, Runs([error])), receive_now(stack))
    assert only(stack, "once").state == ends


def test_an_outcome_unknown_error_fails_at_most_once_and_retries_at_least_once(
    stack: Stack,
) -> None:
    from jobkit.errors import OutcomeUnknownError

    # Given one job of each guarantee whose side effect got no answer
    stack.client.enqueue(ONCE, payload(1), job_id="once-unknown")
    stack.client.enqueue(ECHO, payload(2), job_id="least-unknown")
    worker = make_once_worker(stack, Runs([OutcomeUnknownError("SES: read timeout")]))
    worker.processor(ECHO)(Runs([OutcomeUnknownError("SES: read timeout")]))
    # When both run
    deliver(stack, worker, receive_now(stack))
    # Then the at_most_once one fails for a person to check, the other is retried
    once = only(stack, "once-unknown")
    assert once.state == JobState.FAILED
    assert once.error is not None and once.error.startswith("outcome unknown: ")
    assert only(stack, "least-unknown").state == JobState.RETRYING


def test_the_completion_write_is_retried_in_process(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    # Given a job whose completion write is throttled twice (after botocore's own retries)
    stack.client.enqueue(ECHO, payload(), job_id="throttled-outcome")
    original = JobLog._update
    throttled: list[str] = []

    def flaky(self: JobLog, job_id: str, update: str, *args: Any, **kwargs: Any) -> Any:
        if "succeeded" in str(args[0].get(":succeeded", "")) and len(throttled) < 2:
            throttled.append(job_id)
            error = {"Error": {"Code": "ProvisionedThroughputExceededException"}}
            raise ClientError(error, "UpdateItem")  # type: ignore[arg-type]
        return original(self, job_id, update, *args, **kwargs)

    monkeypatch.setattr(JobLog, "_update", flaky)
    # When it runs
    assert deliver(stack, make_worker(stack, Runs()), receive_now(stack)) == []
    # Then the write got through on its third try, and the job succeeded once
    assert throttled == ["throttled-outcome"] * 2
    job = only(stack, "throttled-outcome")
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert receive_now(stack) == []


def test_a_retried_write_whose_first_try_landed_counts_as_done(stack: Stack) -> None:
    import time_machine

    from jobkit import aws

    # Given a running attempt whose completion write landed
    stack.client.enqueue(ECHO, payload(), job_id="landed")
    log = JobLog(stack.settings.table)
    assert log.claim("landed", 60).job is not None
    with time_machine.travel(utcnow(), tick=False):  # the very same request, values and all
        assert log.succeed("landed", 1, "r", 5, ECHO.retention.succeeded) is True
        # When the same write is sent again as a plain second call, it is refused ...
        assert log.succeed("landed", 1, "r", 5, ECHO.retention.succeeded) is False

        # ... but sent again by botocore's retry (the first answer was lost), it is done
        def as_retry(parsed: dict[str, Any], **_: Any) -> None:
            parsed.setdefault("ResponseMetadata", {})["RetryAttempts"] = 1

        aws.dynamodb().meta.events.register("after-call.dynamodb.UpdateItem", as_retry)
        assert log.succeed("landed", 1, "r", 5, ECHO.retention.succeeded) is True
        # and a different write (another result) is still refused
        assert log.succeed("landed", 1, "other", 5, ECHO.retention.succeeded) is False
    assert only(stack, "landed").result == "r"


def test_a_job_deferred_100_times_runs_once_admitted_with_no_dlq_entry(
    jobkit_harness: Harness,
) -> None:
    # Given a worker whose rate limit turns a job away 100 times (5 s each), on a queue that
    # dead-letters a message received more than 10 times
    asked: list[int] = []
    runs = Runs()
    worker = Worker("email")
    worker.processor(ECHO)(runs)

    @worker.admission(ECHO)
    def admit(p: EchoPayload) -> float | None:
        asked.append(p.n)
        return 5.0 if len(asked) <= 100 else None

    jobkit_harness.register(worker)
    assert jobkit_harness.max_receive_count == 10
    jobkit_harness.client.enqueue(ECHO, payload(7), job_id="throttled")
    # When time passes until nothing is left to do
    jobkit_harness.run_until_idle()
    # Then it was admitted on the 101st ask, ran once, spent one attempt, and the DLQ is empty
    assert len(asked) == 101
    assert runs.calls == [(7, "throttled", 1)]
    job = jobkit_harness.job("throttled")
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert jobkit_harness.dead_letters("email") == []


def test_a_bad_request_in_enqueue_many_fails_alone(stack: Stack) -> None:
    # Given a batch with good requests around an over-long id, an empty one and a bad delay
    result = stack.client.enqueue_many(
        [
            EnqueueRequest(ECHO, payload(1), job_id="good-1"),
            EnqueueRequest(ECHO, payload(2), job_id="x" * 513),
            EnqueueRequest(ECHO, payload(3), job_id=""),
            EnqueueRequest(ECHO, payload(4), job_id="nan-delay", delay=float("nan")),
            EnqueueRequest(ECHO, payload(5), job_id="good-2"),
        ]
    )
    # Then the good ones are enqueued and sent, each bad one has its reason
    assert sorted(j.id for j in result.created) == ["good-1", "good-2"]
    assert [(o.index, o.ok) for o in result.outcomes] == [
        (0, True), (1, False), (2, False), (3, False), (4, True)
    ]  # fmt: skip
    assert sorted(body_of(m)["id"] for m in stack.receive(stack.queue_url)) == ["good-1", "good-2"]
    assert stack.client.get_job("nan-delay") is None


def test_a_megabyte_error_message_is_recorded_masked_and_cut(stack: Stack) -> None:
    # Given a processor that fails with a 1 MB message naming an address in another script
    stack.client.enqueue(ECHO, payload(), job_id="huge-error")
    text = "ada@münchen.de rejected: " + "a@" * 500_000
    worker = make_worker(stack, Runs([PermanentError(text)]))
    # When it runs
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then the job failed with a cut, masked error, and the dead letter says the same
    job = only(stack, "huge-error")
    assert job.state == JobState.FAILED and job.error is not None
    assert job.error.startswith("a***@m***.de rejected: ") and len(job.error) <= 1000
    assert reason_of(dead_letters(stack)[0]) == job.error


class Killed(BaseException):
    """A worker's process dying (SIGKILL): nothing after it runs, no handler sees it."""


@pytest.mark.parametrize("path", ["abandoned", "permanent", "unknown-type"])
def test_a_worker_killed_between_failing_a_job_and_dead_lettering_it_loses_no_dead_letter(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    from jobkit import queues

    # Given a job about to fail (its last attempt abandoned, a permanent error, or a type
    # nobody hosts), and a worker that dies right after the failing write, before the DLQ send
    if path == "abandoned":
        stack.client.enqueue(ONCE, payload(), job_id="half-failed")
        assert JobLog(stack.settings.table).claim("half-failed", 60).job is not None
        expire_lease(stack, "half-failed")
        worker = make_once_worker(stack, Runs())
    elif path == "permanent":
        stack.client.enqueue(ECHO, payload(), job_id="half-failed")
        worker = make_worker(stack, Runs([PermanentError("no such account")]))
    else:
        send_raw(stack, "half-failed", "test.nobody_hosts_this", {"x": 1})
        worker = make_worker(stack, Runs())
    real_dead_letter = queues.dead_letter

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed

    monkeypatch.setattr(queues, "dead_letter", die)
    (message,) = receive_now(stack)
    with pytest.raises(Killed):
        worker.handle(sqs_event([message]), None)
    failed = only(stack, "half-failed")
    assert failed.state == JobState.FAILED and failed.dead_letter_due
    assert dead_letters(stack) == []
    # When its message comes back (the dead worker never deleted it) to a worker that lives
    monkeypatch.setattr(queues, "dead_letter", real_dead_letter)
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then the dead letter is sent, with the job's reason and generation, and no longer due
    (letter,) = dead_letters(stack)
    assert reason_of(letter) == failed.error
    assert body_of(letter)["dead_letter"]["generation"] == failed.generation
    after = only(stack, "half-failed")
    assert (after.state, after.dead_letter_due, after.error) == (
        JobState.FAILED,
        False,
        failed.error,
    )
    assert receive_now(stack) == []
