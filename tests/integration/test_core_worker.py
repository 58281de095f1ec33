"""Worker runtime behaviour against moto: claim, run once, retry with backoff, dead-letter."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from jobkit import JobState, PermanentError, TransientError
from jobkit.models import Envelope, utcnow
from jobkit.store import JobLog
from jobkit.worker import Worker
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    OTHER,
    RECIPIENT,
    Runs,
    body_of,
    dead_letters,
    deliver,
    make_visible,
    make_worker,
    payload,
    reason_of,
    receive_now,
    record_calls,
)


def test_success_runs_once_and_records_the_result_in_three_writes_and_a_page(stack: Stack) -> None:
    # Given a queued job and a processor that succeeds
    calls = record_calls()
    job = stack.client.enqueue(ECHO, payload(7), job_id="ok-1")
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the worker gets its message
    failures = deliver(stack, worker, receive_now(stack))
    # Then it ran once, succeeded, stored the result, and the log took exactly 3 writes, plus
    # one page for the batch (the listing by queue)
    assert failures == []
    assert runs.calls == [(7, "ok-1", 1)]
    done = stack.client.get_job(job.id)
    assert done is not None
    assert done.state == JobState.SUCCEEDED
    assert done.attempts == 1
    assert done.result == {"echo": 7, "attempt": 1}
    assert done.duration_ms is not None and done.finished_at is not None
    assert calls.dynamodb_writes == 4
    assert (calls.ops["PutItem"], calls.ops["UpdateItem"]) == (2, 2)
    assert [p["TableName"] for p in calls.params["PutItem"]] == ["jobs", "pages"]
    assert receive_now(stack) == []


def test_transient_failure_backs_off_then_the_next_delivery_succeeds(stack: Stack) -> None:
    # Given a job whose first run hits a transient error
    stack.client.enqueue(ECHO, payload(), job_id="flaky")
    runs = Runs([TransientError(f"SES throttled sending to {RECIPIENT}")])
    worker = make_worker(stack, runs)
    calls = record_calls()
    # When the worker processes it
    first = receive_now(stack)
    failures = deliver(stack, worker, first)
    # Then the record is a batch item failure, the job is retrying with the (masked) error
    assert failures == [first[0]["MessageId"]]
    job = stack.client.get_job("flaky")
    assert job is not None
    assert job.state == JobState.RETRYING
    assert job.attempts == 1
    assert job.error is not None and job.error.startswith("TransientError: SES throttled")
    assert RECIPIENT not in job.error
    # and the message was hidden for the backoff (it is not receivable now)
    assert calls.ops["ChangeMessageVisibility"] == 1
    assert calls.params["ChangeMessageVisibility"][0]["VisibilityTimeout"] == 1  # ceil(0.01)
    assert receive_now(stack) == []
    # When the backoff has passed and the message comes back
    make_visible(stack, first)
    second = receive_now(stack)
    assert len(second) == 1
    assert deliver(stack, worker, second) == []
    # Then the second attempt succeeds
    job = stack.client.get_job("flaky")
    assert job is not None
    assert job.state == JobState.SUCCEEDED
    assert job.attempts == 2
    assert [c[2] for c in runs.calls] == [1, 2]
    assert dead_letters(stack) == []


def test_retry_after_of_a_transient_error_sets_the_visibility(stack: Stack) -> None:
    # Given a processor that is told to come back in 30 s
    stack.client.enqueue(ECHO, payload(), job_id="rate-limited")
    worker = make_worker(stack, Runs([TransientError("429", retry_after=30)]))
    calls = record_calls()
    # When it runs
    deliver(stack, worker, receive_now(stack))
    # Then the message is hidden for at least that long
    assert calls.params["ChangeMessageVisibility"][0]["VisibilityTimeout"] == 30


def test_plain_exception_is_retried_like_a_transient_error(stack: Stack) -> None:
    stack.client.enqueue(ECHO, payload(), job_id="bug")
    worker = make_worker(stack, Runs([ValueError("boom")]))
    messages = receive_now(stack)
    assert deliver(stack, worker, messages) == [messages[0]["MessageId"]]
    job = stack.client.get_job("bug")
    assert job is not None
    assert job.state == JobState.RETRYING
    assert job.error == "ValueError: boom"


def test_permanent_failure_dead_letters_at_once_without_retry(stack: Stack) -> None:
    # Given a job whose processor says retrying cannot help
    stack.client.enqueue(ECHO, payload(3), job_id="doomed")
    runs = Runs([PermanentError(f"no account for {RECIPIENT}")])
    worker = make_worker(stack, runs)
    calls = record_calls()
    # When it runs
    failures = deliver(stack, worker, receive_now(stack))
    # Then it is not reported for redelivery and not hidden for a retry
    assert failures == []
    assert calls.ops["ChangeMessageVisibility"] == 0
    # and the job failed, with the reason (masked)
    job = stack.client.get_job("doomed")
    assert job is not None
    assert job.state == JobState.FAILED
    assert job.attempts == 1
    assert job.error is not None and "no account for a***@e***.com" in job.error
    # and the DLQ holds the envelope, marked, with the reason as an attribute
    (letter,) = dead_letters(stack)
    body = body_of(letter)
    assert body["id"] == "doomed"
    assert body["type"] == ECHO.name
    assert body["payload"] == payload(3)
    assert body["dead_letter"]["reason"] == job.error
    assert body["dead_letter"]["generation"] == 0
    assert reason_of(letter) == job.error
    assert RECIPIENT not in reason_of(letter)
    assert letter["MessageAttributes"]["jobkit-job-id"]["StringValue"] == "doomed"
    # and nothing is left to retry
    assert receive_now(stack) == []
    assert len(runs.calls) == 1


def test_invalid_payload_in_the_queue_is_a_permanent_failure(stack: Stack) -> None:
    # Given a raw producer that sent a payload the job type rejects
    envelope = Envelope(
        id="raw-bad", type=ECHO.name, payload={"to": "nobody", "n": 1}, enqueued_at=utcnow()
    )
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=envelope.to_json())
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the worker gets it
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then the processor never runs, the job fails and is dead-lettered naming the field
    assert runs.calls == []
    job = stack.client.get_job("raw-bad")
    assert job is not None
    assert job.state == JobState.FAILED
    assert job.error is not None and "to:" in job.error
    assert "nobody" not in job.error
    assert len(dead_letters(stack)) == 1


def test_exhausted_attempts_fail_the_job_and_dead_letter_it(stack: Stack) -> None:
    # Given a job (3 attempts) that fails transiently every time
    stack.client.enqueue(ECHO, payload(), job_id="hopeless")
    errors: list[BaseException | None] = [TransientError(f"down {i}") for i in range(3)]
    runs = Runs(errors)
    worker = make_worker(stack, runs)
    # When it is delivered until the worker stops asking for it back
    reported = []
    for _ in range(3):
        messages = receive_now(stack)
        assert len(messages) == 1
        reported.append(deliver(stack, worker, messages))
        if reported[-1]:
            make_visible(stack, messages)
    # Then the first two attempts were retries, the third failed for good
    assert [len(r) for r in reported] == [1, 1, 0]
    assert [c[2] for c in runs.calls] == [1, 2, 3]
    job = stack.client.get_job("hopeless")
    assert job is not None
    assert job.state == JobState.FAILED
    assert job.attempts == 3
    assert job.error is not None and job.error.startswith("attempts exhausted (3)")
    assert "down 2" in job.error
    (letter,) = dead_letters(stack)
    assert reason_of(letter).startswith("attempts exhausted")
    assert receive_now(stack) == []


def test_duplicate_delivery_after_success_does_not_run_again(stack: Stack) -> None:
    # Given a job that has succeeded
    stack.client.enqueue(ECHO, payload(), job_id="once")
    runs = Runs()
    worker = make_worker(stack, runs)
    first = receive_now(stack)
    deliver(stack, worker, first)
    # When SQS delivers the same message again
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=first[0]["Body"])
    failures = deliver(stack, worker, receive_now(stack))
    # Then the processor is not run again, nothing is reported and the job is unchanged
    assert failures == []
    assert len(runs.calls) == 1
    job = stack.client.get_job("once")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert receive_now(stack) == []


def test_delivery_while_another_worker_holds_the_lease_is_deferred(stack: Stack) -> None:
    # Given a job another worker is running right now (live 60 s lease)
    stack.client.enqueue(ECHO, payload(), job_id="busy")
    JobLog(stack.settings.table).claim("busy", 60)
    runs = Runs()
    worker = make_worker(stack, runs)
    calls = record_calls()
    # When a second copy of its message arrives
    messages = receive_now(stack)
    failures = deliver(stack, worker, messages)
    # Then it is handed back until the lease ends, without running or spending an attempt
    assert failures == [messages[0]["MessageId"]]
    assert runs.calls == []
    assert calls.ops["ChangeMessageVisibility"] == 1
    assert 55 <= calls.params["ChangeMessageVisibility"][0]["VisibilityTimeout"] <= 62
    assert receive_now(stack) == []
    job = stack.client.get_job("busy")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.RUNNING, 1)


def test_a_crashed_attempt_is_taken_over_once_its_lease_passes(stack: Stack) -> None:
    # Given a worker that claimed the job and died (its short lease has run out)
    stack.client.enqueue(ECHO, payload(), job_id="orphan")
    crashed = JobLog(stack.settings.table).claim("orphan", 0.05)
    assert crashed.job is not None and crashed.job.attempts == 1
    time.sleep(0.1)
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the message comes back after the visibility timeout
    failures = deliver(stack, worker, receive_now(stack))
    # Then the next worker takes it over and runs it once, as attempt 2
    assert failures == []
    assert runs.calls == [(0, "orphan", 2)]
    job = stack.client.get_job("orphan")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)


def test_a_crash_on_the_last_attempt_fails_the_job_without_running_it(stack: Stack) -> None:
    # Given a one-attempt job whose only attempt crashed
    stack.client.enqueue(OTHER, payload(), job_id="last-crash")
    JobLog(stack.settings.table).claim("last-crash", 0.05)
    time.sleep(0.1)
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the message comes back
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then the job is failed as exhausted and dead-lettered, not run a second time
    assert runs.calls == []
    job = stack.client.get_job("last-crash")
    assert job is not None
    assert job.state == JobState.FAILED
    assert job.error is not None and job.error.startswith("attempts exhausted (1)")
    assert len(dead_letters(stack)) == 1


@pytest.mark.parametrize(
    "body",
    ["hello", json.dumps({"id": "x", "payload": {}}), json.dumps([1, 2])],
    ids=["not-json", "no-type", "not-an-object"],
)
def test_a_message_that_is_not_an_envelope_is_dead_lettered_alone(stack: Stack, body: str) -> None:
    # Given a batch with one foreign message among valid jobs
    stack.client.enqueue(ECHO, payload(1), job_id="good-1")
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=body)
    stack.client.enqueue(ECHO, payload(2), job_id="good-2")
    runs = Runs()
    worker = make_worker(stack, runs)
    messages = receive_now(stack)
    assert len(messages) == 3
    # When the worker processes the batch
    failures = deliver(stack, worker, messages)
    # Then the foreign message goes to the DLQ with a reason and is not reported
    assert failures == []
    (letter,) = dead_letters(stack)
    assert letter["Body"] == body
    assert reason_of(letter).startswith("not a jobkit envelope")
    # and the valid jobs succeed
    for job_id in ("good-1", "good-2"):
        job = stack.client.get_job(job_id)
        assert job is not None and job.state == JobState.SUCCEEDED
    assert sorted(c[0] for c in runs.calls) == [1, 2]


def test_an_envelope_sent_straight_to_sqs_is_adopted_and_run(stack: Stack) -> None:
    # Given a producer that skipped enqueue and wrote the envelope to SQS itself
    envelope = Envelope(id="raw-1", type=ECHO.name, payload=payload(5), enqueued_at=utcnow())
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=envelope.to_json())
    assert stack.client.get_job("raw-1") is None
    runs = Runs()
    worker = make_worker(stack, runs)
    # When the worker gets it
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then the job log learns of it and it runs once
    job = stack.client.get_job("raw-1")
    assert job is not None
    assert (job.state, job.attempts, job.type) == (JobState.SUCCEEDED, 1, ECHO.name)
    assert job.payload == payload(5)
    assert runs.calls == [(5, "raw-1", 1)]


def test_a_job_type_without_processor_on_this_worker_fails_to_the_dlq(stack: Stack) -> None:
    # Given a job of a type this worker does not host
    stack.client.enqueue(OTHER, payload(), job_id="orphan-type")
    worker = Worker("email", stack.worker_settings())
    worker.processor(ECHO)(Runs())
    # When it arrives
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then it is failed and dead-lettered with the reason
    job = stack.client.get_job("orphan-type")
    assert job is not None
    assert job.state == JobState.FAILED
    (letter,) = dead_letters(stack)
    assert "no processor for job type" in reason_of(letter)
