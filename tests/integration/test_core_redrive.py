"""Dead-letter redrive against moto: both the fallback mover and StartMessageMoveTask's path."""

from __future__ import annotations

import boto3

from jobkit import JobState, PermanentError
from jobkit.worker import Worker
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    Runs,
    body_of,
    dead_letters,
    deliver,
    make_worker,
    payload,
    receive_now,
)


def fail_to_dlq(stack: Stack, job_id: str, runs: Runs) -> dict[str, object]:
    """Enqueue a job, fail it permanently, and return its dead letter (left in the DLQ)."""
    stack.client.enqueue(ECHO, payload(), job_id=job_id)
    runs.actions.append(PermanentError("partner said no"))
    deliver(stack, make_worker(stack, runs), receive_now(stack))
    (letter,) = boto3.client("sqs").receive_message(
        QueueUrl=stack.dlq_url, VisibilityTimeout=0, MessageAttributeNames=["All"]
    )["Messages"]
    return dict(letter)


def send_to_queue(stack: Stack, body: str) -> None:
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=body)


def test_redrive_moves_dead_letters_back_with_fresh_attempts(stack: Stack) -> None:
    # Given a job that failed into the DLQ
    runs = Runs()
    fail_to_dlq(stack, "redrive-me", runs)
    # When the queue's dead letters are redriven (moto: receive-send-delete fallback)
    result = stack.client.redrive("email")
    # Then the DLQ is empty and the job is queued again with fresh attempts
    assert (result.queue, result.moved, result.task_handle) == ("email", 1, None)
    assert dead_letters(stack) == []
    job = stack.client.get_job("redrive-me")
    assert job is not None
    assert (job.state, job.attempts, job.generation) == (JobState.QUEUED, 0, 1)
    # and the message is back on the queue, without the dead-letter mark
    messages = receive_now(stack)
    assert len(messages) == 1
    assert "dead_letter" not in body_of(messages[0])
    # and the next delivery succeeds as attempt 1
    assert deliver(stack, make_worker(stack, runs), messages) == []
    job = stack.client.get_job("redrive-me")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert len(runs.calls) == 2


def test_redrive_of_an_empty_dlq_moves_nothing(stack: Stack) -> None:
    assert stack.client.redrive("email").moved == 0


def test_redrive_moves_foreign_messages_back_as_they_are(stack: Stack) -> None:
    boto3.client("sqs").send_message(QueueUrl=stack.dlq_url, MessageBody="hello")
    assert stack.client.redrive("email").moved == 1
    assert [m["Body"] for m in stack.receive(stack.queue_url)] == ["hello"]


def test_a_dead_letter_moved_back_as_is_gets_fresh_attempts(stack: Stack) -> None:
    # Given a failed job whose dead letter StartMessageMoveTask puts back unchanged
    runs = Runs()
    letter = fail_to_dlq(stack, "moved", runs)
    assert body_of(letter)["dead_letter"]["generation"] == 0
    send_to_queue(stack, str(letter["Body"]))
    # When the worker gets it
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    # Then it claims the failed job with fresh attempts and runs it to success
    job = stack.client.get_job("moved")
    assert job is not None
    assert (job.state, job.attempts, job.generation) == (JobState.SUCCEEDED, 1, 1)
    assert [c[2] for c in runs.calls] == [1, 1]


def test_a_moved_back_dead_letter_that_fails_again_is_dead_lettered_with_its_generation(
    stack: Stack,
) -> None:
    runs = Runs()
    letter = fail_to_dlq(stack, "twice", runs)
    boto3.client("sqs").purge_queue(QueueUrl=stack.dlq_url)
    send_to_queue(stack, str(letter["Body"]))
    runs.actions.append(PermanentError("still no"))
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    job = stack.client.get_job("twice")
    assert job is not None
    assert (job.state, job.generation) == (JobState.FAILED, 1)
    (again,) = boto3.client("sqs").receive_message(QueueUrl=stack.dlq_url, VisibilityTimeout=0)[
        "Messages"
    ]
    assert body_of(dict(again))["dead_letter"]["generation"] == 1
    # and a redrive of that letter works again
    assert stack.client.redrive("email").moved == 1
    job = stack.client.get_job("twice")
    assert job is not None
    assert (job.state, job.generation) == (JobState.QUEUED, 2)


def test_a_stale_dead_letter_is_skipped_after_the_job_was_retried(stack: Stack) -> None:
    # Given a failed job that was retried by id and succeeded since
    runs = Runs()
    letter = fail_to_dlq(stack, "stale", runs)
    stack.client.retry("stale")
    worker = make_worker(stack, runs)
    deliver(stack, worker, receive_now(stack))
    assert len(runs.calls) == 2
    # When its old dead letter (generation 0) is moved back
    send_to_queue(stack, str(letter["Body"]))
    failures = deliver(stack, worker, receive_now(stack))
    # Then it is dropped: not run again, not reported, the job unchanged
    assert failures == []
    assert len(runs.calls) == 2
    job = stack.client.get_job("stale")
    assert job is not None
    assert (job.state, job.attempts, job.generation) == (JobState.SUCCEEDED, 1, 1)


def test_a_stale_dead_letter_does_not_revive_a_later_failure(stack: Stack) -> None:
    # Given a job that failed, was retried, and failed again (generation 1)
    runs = Runs()
    letter = fail_to_dlq(stack, "stale-failed", runs)
    stack.client.retry("stale-failed")
    runs.actions.append(PermanentError("no again"))
    worker = make_worker(stack, runs)
    deliver(stack, worker, receive_now(stack))
    # When the generation-0 dead letter comes back
    send_to_queue(stack, str(letter["Body"]))
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then the job stays failed and does not run
    assert len(runs.calls) == 2
    job = stack.client.get_job("stale-failed")
    assert job is not None
    assert (job.state, job.generation) == (JobState.FAILED, 1)


def test_a_job_no_worker_hosts_is_revived_by_redrive_after_a_retry(stack: Stack) -> None:
    # Given a job at generation 1 (failed, then retried) that reaches a worker which does not
    # host its type (a deploy that lost the processor)
    runs = Runs()
    fail_to_dlq(stack, "homeless", runs)
    boto3.client("sqs").purge_queue(QueueUrl=stack.dlq_url)
    stack.client.retry("homeless")
    bare = Worker("email", stack.worker_settings())
    assert deliver(stack, bare, receive_now(stack)) == []
    job = stack.client.get_job("homeless")
    assert job is not None
    assert (job.state, job.generation) == (JobState.FAILED, 1)
    # When the processor is back and the dead letters are redriven
    assert stack.client.redrive("email").moved == 1
    # Then the job is queued again and runs
    job = stack.client.get_job("homeless")
    assert job is not None
    assert (job.state, job.generation) == (JobState.QUEUED, 2)
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    job = stack.client.get_job("homeless")
    assert job is not None
    assert job.state == JobState.SUCCEEDED
