"""A claim in one write: the short way (the write returns only what it changed) for a job that
is what its message says, the long way (the whole item back) for a job whose max_attempts or
generation is not the expected one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobkit import JobState, TransientError
from jobkit.jobs import Backoff, JobType
from jobkit.models import utcnow
from jobkit.store import ClaimOutcome, Expected, JobLog
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    EchoPayload,
    Runs,
    deliver,
    make_visible,
    make_worker,
    payload,
    receive_now,
    record_calls,
)

# ECHO as a producer declared it before a deploy lowered its max_attempts from 5 to 3.
ECHO_BEFORE = JobType(
    ECHO.name,
    EchoPayload,
    queue="email",
    max_attempts=5,
    backoff=Backoff(base=0.01, cap=0.05),
    timeout=5,
)


@dataclass
class Contexts(Runs):
    """Runs that also keep what each call's JobContext said (attempt, max_attempts)."""

    seen: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, p: EchoPayload, ctx: Any) -> dict[str, Any]:
        self.seen.append((ctx.attempt, ctx.max_attempts))
        return super().__call__(p, ctx)


def claims(calls: Any) -> list[str]:
    """ReturnValues of each claim written (the UpdateItems that set a job running)."""
    return [
        p["ReturnValues"]
        for p in calls.params["UpdateItem"]
        if {":running", ":one"} <= p["ExpressionAttributeValues"].keys()
    ]


def test_a_job_as_its_message_says_is_claimed_in_one_short_write(stack: Stack) -> None:
    # Given a queued job of ECHO (max_attempts 3, never redriven)
    stack.client.enqueue(ECHO, payload(1), job_id="short-1")
    runs = Contexts()
    calls = record_calls()
    # When a worker runs it
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    # Then one claim wrote it, returning only what it changed,
    assert claims(calls) == ["UPDATED_NEW"]
    # and the processor saw the log's attempt and max_attempts, and the job succeeded
    assert runs.seen == [(1, 3)]
    job = stack.client.get_job("short-1")
    assert job is not None
    assert (job.state, job.attempts, job.max_attempts) == (JobState.SUCCEEDED, 1, 3)


def test_a_job_enqueued_with_other_max_attempts_is_claimed_the_long_way(stack: Stack) -> None:
    # Given a job enqueued while its type allowed 5 attempts; the worker's type now says 3
    stack.client.enqueue(ECHO_BEFORE, payload(2), job_id="long-1")
    runs = Contexts()
    runs.actions = [TransientError("busy")] * 3
    calls = record_calls()
    worker = make_worker(stack, runs)
    # When it fails three times, transiently
    for _ in range(3):
        messages = receive_now(stack)
        assert len(messages) == 1
        deliver(stack, worker, messages)
        make_visible(stack, messages)
    # Then every claim went the long way (the short one refused: one write more each),
    assert claims(calls) == ["UPDATED_NEW", "ALL_NEW"] * 3
    # and the job retries by the log's count (5), not the worker's (3)
    assert runs.seen == [(1, 5), (2, 5), (3, 5)]
    job = stack.client.get_job("long-1")
    assert job is not None
    assert (job.state, job.attempts, job.max_attempts) == (JobState.RETRYING, 3, 5)


def test_a_redriven_job_is_claimed_the_long_way_and_keeps_its_generation(stack: Stack) -> None:
    # Given a job at generation 1 (the log says so), queued again
    stack.client.enqueue(ECHO, payload(3), job_id="gen-1")
    log = JobLog(stack.settings.table)
    expected = Expected(ECHO.name, "email", payload(3), 3, created_at=utcnow())
    claim = log.claim("gen-1", 60, expected=expected)
    assert claim.outcome is ClaimOutcome.CLAIMED
    assert log.fail("gen-1", 1, "boom", ECHO.retention.failed)
    stack.client.retry("gen-1")  # failed -> queued, generation 1
    # When it is claimed as its message says
    again = log.claim("gen-1", 60, expected=expected)
    # Then the claim holds, and the job it gives is the log's, generation and all
    assert again.outcome is ClaimOutcome.CLAIMED and again.job is not None
    assert (again.job.generation, again.job.attempts, again.job.max_attempts) == (1, 1, 3)


def test_a_short_claim_refused_for_another_payload_is_a_mismatch(stack: Stack) -> None:
    # Given a queued job
    stack.client.enqueue(ECHO, payload(4), job_id="odd-1")
    # When a message with another payload claims it
    claim = JobLog(stack.settings.table).claim(
        "odd-1", 60, expected=Expected(ECHO.name, "email", payload(5), 3, created_at=utcnow())
    )
    # Then it is refused as a mismatch and the job is left queued
    assert claim.outcome is ClaimOutcome.MISMATCH
    job = stack.client.get_job("odd-1")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)
