"""Edges of the core: send failures, short invocations, progress, configuration gaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from jobkit import ConfigurationError, EnqueueError, EnqueueRequest, JobState
from jobkit.client import Jobkit
from jobkit.worker import JobContext
from tests.conftest import Stack, sqs_event

from .test_core_support import (
    ECHO,
    RECIPIENT,
    Runs,
    deliver,
    make_worker,
    payload,
    receive_now,
    record_calls,
)


def missing_queue(stack: Stack) -> Jobkit:
    return Jobkit(stack.settings.model_copy(update={"queues": {"email": stack.queue_url + "-x"}}))


def test_a_job_whose_message_cannot_be_sent_is_failed_in_the_log(stack: Stack) -> None:
    # Given a queue URL that leads nowhere
    client = missing_queue(stack)
    # When a job is enqueued
    with pytest.raises(EnqueueError, match="could not send"):
        client.enqueue(ECHO, payload(), job_id="unsent")
    # Then the log says it failed and why, instead of leaving it queued forever
    job = stack.client.get_job("unsent")
    assert job is not None
    assert job.state == JobState.FAILED
    assert job.error is not None and job.error.startswith("enqueue failed")
    assert job.id in [j.id for j in stack.client.list_jobs(state="failed")]


def test_enqueue_many_reports_each_unsent_job_and_fails_it_in_the_log(stack: Stack) -> None:
    client = missing_queue(stack)
    result = client.enqueue_many(
        [EnqueueRequest(ECHO, payload(i), job_id=f"unsent-{i}") for i in range(3)]
    )
    assert [o.job_id for o in result.failed] == ["unsent-0", "unsent-1", "unsent-2"]
    assert result.created == []
    for i in range(3):
        job = stack.client.get_job(f"unsent-{i}")
        assert job is not None and job.state == JobState.FAILED


def test_redrive_without_a_dead_letter_queue_url_is_a_configuration_error(stack: Stack) -> None:
    client = Jobkit(stack.settings.model_copy(update={"dead_letter_queues": {}}))
    with pytest.raises(ConfigurationError, match="JOBKIT_DEAD_LETTER_QUEUES"):
        client.redrive("email")


@dataclass
class FakeLambdaContext:
    remaining_ms: int
    function_name: str = "email"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:email"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_record_with_too_little_invocation_time_left_is_handed_back(stack: Stack) -> None:
    # Given an invocation with 3 s left and a job type that may take 5 s
    stack.client.enqueue(ECHO, payload(), job_id="no-time")
    runs = Runs()
    worker = make_worker(stack, runs)
    calls = record_calls()
    messages = receive_now(stack)
    # When the worker gets the record
    response = worker.handle(sqs_event(messages), FakeLambdaContext(3_000))  # type: ignore[arg-type]
    # Then it is handed back at once without running or spending an attempt
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        messages[0]["MessageId"]
    ]
    assert runs.calls == []
    assert calls.params["ChangeMessageVisibility"][0]["VisibilityTimeout"] == 0
    job = stack.client.get_job("no-time")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)


def test_with_enough_invocation_time_the_record_runs(stack: Stack) -> None:
    stack.client.enqueue(ECHO, payload(), job_id="in-time")
    runs = Runs()
    worker = make_worker(stack, runs)
    messages = receive_now(stack)
    response = worker.handle(sqs_event(messages), FakeLambdaContext(20_000))  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []
    assert len(runs.calls) == 1


def test_progress_is_recorded_in_the_log(stack: Stack) -> None:
    # Given a processor that reports milestones
    stack.client.enqueue(ECHO, payload(), job_id="progress")
    seen: dict[str, Any] = {}

    def step(p: Any, ctx: JobContext) -> str:
        ctx.report_progress({"done": 1, "of": 2})
        job = stack.client.get_job(ctx.job_id)
        seen["progress"] = job.progress if job else None
        seen["remaining"] = ctx.remaining_time()
        return "ok"

    # When it runs
    assert deliver(stack, make_worker(stack, step), receive_now(stack)) == []
    # Then the log showed the progress while it ran and keeps it
    assert seen["progress"] == {"done": 1, "of": 2}
    assert 0 < seen["remaining"] <= ECHO.timeout
    job = stack.client.get_job("progress")
    assert job is not None
    assert (job.state, job.result, job.progress) == (JobState.SUCCEEDED, "ok", {"done": 1, "of": 2})


def test_an_error_message_stored_in_the_log_is_masked_and_bounded(stack: Stack) -> None:
    stack.client.enqueue(ECHO, payload(), job_id="long-error")
    worker = make_worker(stack, Runs([RuntimeError(f"{RECIPIENT} " * 500)]))
    deliver(stack, worker, receive_now(stack))
    job = stack.client.get_job("long-error")
    assert job is not None and job.error is not None
    assert RECIPIENT not in job.error
    assert len(job.error) <= 1000


def test_an_aws_failure_is_a_jobkit_error_with_its_cause(stack: Stack) -> None:
    from jobkit import JobkitError
    from jobkit.errors import ServiceError

    # Given a client whose table does not exist
    client = Jobkit(stack.settings.model_copy(update={"table": "no-such-table"}))
    # When a job is read, Then AWS's refusal comes out as a ServiceError saying what failed
    with pytest.raises(ServiceError) as raised:
        client.get_job("any")
    assert isinstance(raised.value, JobkitError)
    assert raised.value.operation == "GetItem"
    assert raised.value.code == "ResourceNotFoundException"
    assert "GetItem failed: ResourceNotFoundException" in str(raised.value)
    assert raised.value.__cause__ is not None  # botocore's error, for whoever needs it


def test_an_unreachable_endpoint_is_a_jobkit_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobkit import aws
    from jobkit.errors import ServiceError

    # Given every client pointed at a port where nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    aws.reset_clients()
    # When a job is enqueued, Then the connection error is a ServiceError, not botocore's own
    with pytest.raises(ServiceError, match="EndpointConnectionError"):
        stack.client.enqueue(ECHO, payload(), job_id="nowhere")
    aws.reset_clients()
