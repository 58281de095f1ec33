"""Lifecycle logs and metrics of the worker: structured, correlated, and free of addresses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobkit import PermanentError, TransientError
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    RECIPIENT,
    Runs,
    deliver,
    make_visible,
    make_worker,
    payload,
    receive_now,
)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_lifecycle_is_logged_with_job_keys_and_never_the_address(
    stack: Stack, stdout: pytest.CaptureFixture[str]
) -> None:
    # Given one job that retries once then succeeds, and one that fails for good,
    # both with errors that mention the recipient's address
    stack.client.enqueue(ECHO, payload(1), job_id="log-retry")
    stack.client.enqueue(ECHO, payload(2), job_id="log-fail")
    runs = Runs()
    worker = make_worker(stack, runs)

    def scripted(p: Any, ctx: Any) -> Any:
        if ctx.job_id == "log-retry" and ctx.attempt == 1:
            raise TransientError(f"mailbox of {RECIPIENT} busy")
        if ctx.job_id == "log-fail":
            raise PermanentError(f"{RECIPIENT} bounced")
        return runs(p, ctx)

    worker.processor(ECHO)(scripted)
    stdout.readouterr()
    # When the worker processes them
    messages = receive_now(stack)
    failed = deliver(stack, worker, messages)
    make_visible(stack, [m for m in messages if m["MessageId"] in failed])
    deliver(stack, worker, receive_now(stack))
    out = stdout.readouterr().out
    # Then no line carries the address
    assert out, "the worker logged nothing to stdout"
    assert RECIPIENT not in out
    assert "ada.lovelace" not in out
    lines = json_lines(out)
    logs = [line for line in lines if "message" in line]

    def of(job_id: str) -> list[tuple[str, int | None]]:
        return [(x["message"], x.get("attempt")) for x in logs if x.get("job_id") == job_id]

    # and each attempt is one INFO-or-above line, its outcome, with the job's id, type and
    # attempt (the start of an attempt is at DEBUG)
    assert of("log-retry") == [("job retrying", 1), ("job succeeded", 2)]
    assert of("log-fail") == [("job failed", 1)]
    for line in logs:
        if line.get("job_id"):
            assert line["job_type"] == ECHO.name
            # and nothing the log group already says, nor the source location
            assert not {"location", "function_arn", "function_name", "correlation_id"} & set(line)
    failure = next(x for x in logs if x["message"] == "job failed")
    assert failure["level"] == "ERROR"
    assert failure["reason"] == "permanent"
    assert "a***@e***.com" in failure["error"]
    retrying = next(x for x in logs if x["message"] == "job retrying")
    assert retrying["level"] == "WARNING"
    assert 0 < retrying["delay_s"] <= 0.05
    succeeded = next(x for x in logs if x["message"] == "job succeeded")
    assert isinstance(succeeded["duration_ms"], int)
    # and the job keys do not leak into lines about other records
    assert all(("job_id" in x) for x in logs if x["message"].startswith("job "))


def test_metrics_count_outcomes_per_job_type(
    stack: Stack, stdout: pytest.CaptureFixture[str]
) -> None:
    # Given a batch with a success, a retry and a failure of one job type
    for job_id in ("m-ok", "m-retry", "m-fail"):
        stack.client.enqueue(ECHO, payload(), job_id=job_id)
    worker = make_worker(stack, Runs())

    def scripted(p: Any, ctx: Any) -> Any:
        if ctx.job_id == "m-retry":
            raise TransientError("later")
        if ctx.job_id == "m-fail":
            raise PermanentError("never")
        return None

    worker.processor(ECHO)(scripted)
    stdout.readouterr()
    # When the worker processes the batch
    deliver(stack, worker, receive_now(stack))
    # Then one EMF record carries the counts and the duration, dimensioned by job type
    emf = [x for x in json_lines(stdout.readouterr().out) if "_aws" in x]
    assert len(emf) == 1
    record = emf[0]
    assert record["job_type"] == ECHO.name
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "jobkit"
    assert record["JobSucceeded"] in (1, [1.0], 1.0)
    assert record["JobRetried"] in (1, [1.0], 1.0)
    assert record["JobFailed"] in (1, [1.0], 1.0)
    assert "JobDuration" in record
    # and a later batch does not count the first one's outcomes again
    stack.client.enqueue(ECHO, payload(), job_id="m-ok-2")
    deliver(stack, worker, receive_now(stack))
    (later,) = [x for x in json_lines(stdout.readouterr().out) if "_aws" in x]
    assert later["JobSucceeded"] in (1, [1.0], 1.0)
    assert "JobFailed" not in later and "JobRetried" not in later
