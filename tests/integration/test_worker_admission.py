"""`Worker.admission`: a check before the claim that can hold a job back without an attempt."""

from __future__ import annotations

import boto3
import pytest
from pydantic import BaseModel

from jobkit import JobState
from jobkit.jobs import JobType
from jobkit.models import Envelope, utcnow
from jobkit.worker import JobContext, Worker
from jobkit_tools.testing import Harness


class Ping(BaseModel):
    n: int


PING = JobType("admission_test.ping", Ping, "admission-test", max_attempts=2)


def test_a_job_held_back_keeps_its_attempts_and_runs_when_admitted(
    jobkit_harness: Harness,
) -> None:
    # Given a worker whose admission holds every ping back 30 s, twice
    worker = Worker(queue="admission-test")
    asked: list[int] = []

    @worker.admission(PING)
    def admit(payload: Ping) -> float | None:
        asked.append(payload.n)
        return 30.0 if len(asked) <= 2 else None

    @worker.processor(PING)
    def run(payload: Ping, ctx: JobContext) -> int:
        return payload.n

    jobkit_harness.register(worker)

    # When a ping is enqueued and a minute passes (held back twice)
    jobkit_harness.client.enqueue(PING, {"n": 7}, job_id="ping-7")
    jobkit_harness.advance(59)

    # Then it has not been claimed: queued, no attempt spent, though asked twice
    job = jobkit_harness.job("ping-7")
    assert (job.state, job.attempts, asked) == (JobState.QUEUED, 0, [7, 7])

    # When it is admitted, it runs on its first attempt
    jobkit_harness.run_until_idle()
    job = jobkit_harness.job("ping-7")
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 1, 7)


def test_an_invalid_payload_skips_the_admission_and_fails(jobkit_harness: Harness) -> None:
    # Given a worker whose admission would hold everything back forever
    worker = Worker(queue="admission-test")
    worker.admission(PING)(lambda payload: 3600.0)
    worker.processor(PING)(lambda payload, ctx: None)
    jobkit_harness.register(worker)

    # When a job arrives whose payload does not validate (a foreign producer's)
    envelope = Envelope(id="ping-bad", type=PING.name, payload={"n": "x"}, enqueued_at=utcnow())
    boto3.client("sqs").send_message(
        QueueUrl=jobkit_harness.queue_url("admission-test"), MessageBody=envelope.to_json()
    )
    jobkit_harness.run_until_idle()

    # Then it fails at once, as without an admission
    assert jobkit_harness.job("ping-bad").state == JobState.FAILED


def test_an_admission_is_for_a_type_of_the_workers_queue() -> None:
    with pytest.raises(ValueError, match="runs on queue"):
        Worker(queue="elsewhere").admission(PING)
