"""Producer behaviour against moto: enqueue, deduplication, batches, listing, retry."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from jobkit import (
    ConfigurationError,
    EnqueueRequest,
    InvalidStateError,
    JobNotFoundError,
    JobState,
    JobValidationError,
    PermanentError,
    UnknownJobTypeError,
)
from jobkit.client import Jobkit
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    OTHER,
    RECIPIENT,
    Runs,
    body_of,
    deliver,
    make_worker,
    payload,
    receive_now,
    record_calls,
)


def table_items(stack: Stack) -> list[dict[str, object]]:
    return list(boto3.client("dynamodb").scan(TableName=stack.settings.table)["Items"])


def test_enqueue_records_a_queued_job_and_sends_one_message(stack: Stack) -> None:
    # When a valid job is enqueued
    job = stack.client.enqueue(ECHO, payload(4), job_id="e-1")
    # Then the log has it queued with no attempts spent
    stored = stack.client.get_job("e-1")
    assert stored is not None
    assert (stored.state, stored.attempts, stored.max_attempts) == (JobState.QUEUED, 0, 3)
    assert (stored.type, stored.queue, stored.payload) == (ECHO.name, "email", payload(4))
    assert job.id == stored.id
    # and exactly one envelope is on the job type's queue
    (message,) = stack.receive(stack.queue_url)
    body = body_of(message)
    assert (body["v"], body["id"], body["type"], body["payload"]) == (
        1,
        "e-1",
        ECHO.name,
        payload(4),
    )
    assert "dead_letter" not in body


def test_enqueue_by_name_and_with_a_generated_id(stack: Stack) -> None:
    job = stack.client.enqueue(ECHO.name, payload())
    assert len(job.id) == 32
    assert stack.client.get_job(job.id) is not None
    assert len(stack.receive(stack.queue_url)) == 1


def test_enqueue_with_a_delay_holds_the_message_back(stack: Stack) -> None:
    calls = record_calls()
    stack.client.enqueue(ECHO, payload(), job_id="later", delay=2.5)
    assert calls.params["SendMessage"][0]["DelaySeconds"] == 3
    assert receive_now(stack) == []


def test_invalid_payload_fails_before_anything_is_written_or_sent(stack: Stack) -> None:
    calls = record_calls()
    # When the payload does not match the job type's model
    with pytest.raises(JobValidationError) as caught:
        stack.client.enqueue(ECHO, {"to": "ada-at-example", "n": "many"}, job_id="bad")
    # Then the error names each bad field without echoing the values
    assert {e.split(":")[0] for e in caught.value.errors} == {"to", "n"}
    assert "ada-at-example" not in str(caught.value)
    assert "many" not in str(caught.value)
    # and nothing reached DynamoDB or SQS
    assert sum(calls.ops.values()) == 0
    assert table_items(stack) == []
    assert stack.receive(stack.queue_url) == []


def test_unknown_job_type_is_refused(stack: Stack) -> None:
    with pytest.raises(UnknownJobTypeError, match=r"test\.core\.echo"):
        stack.client.enqueue("test.core.nope", payload())
    assert table_items(stack) == []


def test_a_queue_without_url_is_a_configuration_error(stack: Stack) -> None:
    client = Jobkit(stack.settings.model_copy(update={"queues": {}}))
    with pytest.raises(ConfigurationError, match="JOBKIT_QUEUES"):
        client.enqueue(ECHO, payload(), job_id="nowhere")
    assert table_items(stack) == []
    assert stack.receive(stack.queue_url) == []


def test_enqueue_twice_with_the_same_id_returns_the_first_job(stack: Stack) -> None:
    # Given a job enqueued with a caller-chosen id
    first = stack.client.enqueue(ECHO, payload(1), job_id="dup")
    # When it is enqueued again (even with another payload)
    second = stack.client.enqueue(ECHO, payload(2), job_id="dup")
    # Then the first job comes back and only one message was sent
    assert second.id == first.id
    assert second.payload == payload(1)
    assert second.created_at == first.created_at
    assert len(stack.receive(stack.queue_url)) == 1
    assert len(table_items(stack)) == 1


def test_enqueue_many_batches_dedupes_and_isolates_bad_requests(stack: Stack) -> None:
    # Given two jobs that exist already
    stack.client.enqueue(ECHO, payload(0), job_id="bulk-0")
    stack.client.enqueue(ECHO, payload(1), job_id="bulk-1")
    calls = record_calls()
    # When 60 jobs are enqueued at once, with a repeat and an invalid one among them
    requests = [EnqueueRequest(ECHO, payload(i), job_id=f"bulk-{i}") for i in range(60)]
    requests.insert(30, EnqueueRequest(ECHO, payload(99), job_id="bulk-5"))
    requests.insert(40, EnqueueRequest(ECHO, {"to": RECIPIENT, "n": "x"}, job_id="bulk-bad"))
    result = stack.client.enqueue_many(requests)
    # Then every request has an outcome, in order
    assert len(result.outcomes) == 62
    assert [o.index for o in result.outcomes] == list(range(62))
    # the 58 new jobs are created, the 2 old ones and the repeat come back as existing
    assert sorted(j.id for j in result.created) == sorted(f"bulk-{i}" for i in range(2, 60))
    assert sorted(j.id for j in result.existing) == ["bulk-0", "bulk-1", "bulk-5"]
    repeat = result.outcomes[30]
    assert (repeat.job_id, repeat.created, repeat.ok) == ("bulk-5", False, True)
    assert repeat.job is not None and repeat.job.payload == payload(5)
    # the invalid one fails alone, naming the field
    (bad,) = result.failed
    assert bad.index == 40 and bad.job_id == "bulk-bad"
    assert bad.error is not None and "n:" in bad.error
    assert RECIPIENT not in bad.error
    # and each distinct valid id was one conditional put (60: 58 new, 2 refused, and nothing
    # read first), the messages went in batches: 6 SendMessageBatch (10 each)
    assert calls.ops["PutItem"] == 60
    assert all(
        p["ConditionExpression"] == "attribute_not_exists(pk)" for p in calls.params["PutItem"]
    )
    assert calls.ops["BatchWriteItem"] + calls.ops["BatchGetItem"] + calls.ops["GetItem"] == 0
    assert calls.ops["SendMessageBatch"] == 6
    assert calls.ops["SendMessage"] == 0
    assert max(len(p["Entries"]) for p in calls.params["SendMessageBatch"]) == 10
    # and the queue holds one message per job (2 from before + 58), none for the repeat
    ids = [body_of(m)["id"] for m in stack.receive(stack.queue_url)]
    assert sorted(ids) == sorted(f"bulk-{i}" for i in range(60))
    assert stack.client.get_job("bulk-bad") is None
    stored = stack.client.get_job("bulk-5")
    assert stored is not None and stored.payload == payload(5)


def test_enqueued_batch_jobs_run(stack: Stack) -> None:
    result = stack.client.enqueue_many([EnqueueRequest(ECHO, payload(i)) for i in range(3)])
    runs = Runs()
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    for job in result.created:
        stored = stack.client.get_job(job.id)
        assert stored is not None and stored.state == JobState.SUCCEEDED
    assert sorted(c[0] for c in runs.calls) == [0, 1, 2]


def test_retry_requeues_a_failed_job_with_fresh_attempts(stack: Stack) -> None:
    # Given a job that failed permanently
    stack.client.enqueue(ECHO, payload(), job_id="again")
    runs = Runs([PermanentError("bad day")])
    worker = make_worker(stack, runs)
    deliver(stack, worker, receive_now(stack))
    # When it is retried by id
    job = stack.client.retry("again")
    # Then it is queued with fresh attempts, and a message is on the queue
    assert (job.state, job.attempts, job.generation) == (JobState.QUEUED, 0, 1)
    messages = receive_now(stack)
    assert [body_of(m)["id"] for m in messages] == ["again"]
    # and it runs to success
    assert deliver(stack, worker, messages) == []
    done = stack.client.get_job("again")
    assert done is not None
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1)


def test_retry_refuses_a_job_that_has_not_failed(stack: Stack) -> None:
    stack.client.enqueue(ECHO, payload(), job_id="fine")
    deliver(stack, make_worker(stack, Runs()), receive_now(stack))
    with pytest.raises(InvalidStateError, match="succeeded"):
        stack.client.retry("fine")
    assert receive_now(stack) == []


def test_retry_of_an_unknown_job(stack: Stack) -> None:
    with pytest.raises(JobNotFoundError):
        stack.client.retry("ghost")


def test_list_jobs_by_state_and_type_newest_first_without_scan(stack: Stack) -> None:
    # Given jobs of two types, some failed and some succeeded
    for i in range(4):
        stack.client.enqueue(ECHO, payload(i), job_id=f"echo-{i}")
        time.sleep(0.002)
    for i in range(2):
        stack.client.enqueue(OTHER, payload(i), job_id=f"other-{i}")
        time.sleep(0.002)
    fails = {"echo-1", "echo-3", "other-1"}

    def outcome(p: object, ctx: object) -> None:
        if getattr(ctx, "job_id", "") in fails:
            raise PermanentError("no")

    worker = make_worker(stack, outcome)
    # Processed one at a time, in an order unlike enqueue order
    messages = {body_of(m)["id"]: m for m in stack.receive(stack.queue_url)}
    for job_id in ["other-1", "echo-3", "echo-0", "echo-1", "other-0", "echo-2"]:
        deliver(stack, worker, [messages[job_id]])
        time.sleep(0.002)
    calls = record_calls()
    # When listing
    failed = stack.client.list_jobs(state="failed")
    echo = stack.client.list_jobs(job_type=ECHO)
    echo_ok = stack.client.list_jobs(state="succeeded", job_type=ECHO.name)
    echo_failed = stack.client.list_jobs(state=JobState.FAILED, job_type=ECHO)
    limited = stack.client.list_jobs(job_type=ECHO, limit=2)
    # Then each listing has the right jobs, newest first (failed: by when they failed)
    assert [j.id for j in failed] == ["echo-1", "echo-3", "other-1"]
    assert [j.id for j in echo] == ["echo-3", "echo-2", "echo-1", "echo-0"]
    assert [j.id for j in echo_ok] == ["echo-2", "echo-0"]
    assert [j.id for j in echo_failed] == ["echo-1", "echo-3"]
    assert [j.id for j in limited] == ["echo-3", "echo-2"]
    # and no listing scanned the table
    assert calls.ops["Scan"] == 0
    assert calls.ops["Query"] > 0


def test_list_jobs_lists_jobs_of_every_declared_type_from_their_claim_on(stack: Stack) -> None:
    # Given two jobs of two types, waiting in their queue
    stack.client.enqueue(ECHO, payload(), job_id="q-echo")
    time.sleep(0.002)
    stack.client.enqueue(OTHER, payload(), job_id="q-other")
    calls = record_calls()
    # Then a listing does not show them yet (the queue counts them)
    assert stack.client.list_jobs() == []
    assert stack.client.list_jobs(state="queued") == []
    # When a worker batch runs them
    deliver(stack, make_worker(stack, lambda p, ctx: None), stack.receive(stack.queue_url))
    # Then both are listed, newest enqueued first, with no Scan
    assert [j.id for j in stack.client.list_jobs()] == ["q-other", "q-echo"]
    assert [j.id for j in stack.client.list_jobs(state="succeeded")] == ["q-other", "q-echo"]
    assert calls.ops["Scan"] == 0


def test_a_job_body_is_the_documented_envelope(stack: Stack) -> None:
    stack.client.enqueue(ECHO, payload(), job_id="schema")
    (message,) = stack.receive(stack.queue_url)
    assert set(json.loads(message["Body"])) == {"v", "id", "type", "payload", "enqueued_at"}
