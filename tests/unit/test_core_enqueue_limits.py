"""What enqueue refuses before it touches AWS: size and delay limits, bad input, bad settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from jobkit import (
    ConfigurationError,
    EnqueueRequest,
    EnvelopeTooLargeError,
    InvalidScheduleError,
    JobType,
    JobValidationError,
    UnknownJobTypeError,
)
from jobkit import client as client_module
from jobkit.client import Jobkit
from jobkit.models import SQS_MAX_MESSAGE_BYTES
from jobkit.settings import Settings


class BlobPayload(BaseModel):
    blob: str = ""


BLOB = JobType("test.unit.blob", BlobPayload, queue="email")
NOW = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_aws(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any AWS client asked for is a test failure: these errors come before any call."""
    asked: list[str] = []

    def refuse(service: str) -> Any:
        asked.append(service)
        raise AssertionError(f"enqueue reached AWS ({service}) before refusing")

    monkeypatch.setattr("jobkit.aws.client", refuse)
    monkeypatch.setattr(client_module, "utcnow", lambda: NOW)
    for name in ("JOBKIT_TABLE", "JOBKIT_QUEUES", "JOBKIT_DEAD_LETTER_QUEUES"):
        monkeypatch.delenv(name, raising=False)
    return asked


@pytest.fixture
def jobkit() -> Jobkit:
    # Construction needs a table name only: clients are made lazily.
    return Jobkit(Settings(table="t", queues={"email": "https://example.invalid/q"}))


def body_overhead(jobkit: Jobkit) -> int:
    """Bytes of an envelope around an empty blob."""
    return len(jobkit._prepare(BLOB, {"blob": ""}, "big", None).body.encode())


def test_an_envelope_at_the_sqs_limit_is_accepted(jobkit: Jobkit) -> None:
    room = SQS_MAX_MESSAGE_BYTES - body_overhead(jobkit)
    prepared = jobkit._prepare(BLOB, {"blob": "x" * room}, "big", None)
    assert len(prepared.body.encode()) == SQS_MAX_MESSAGE_BYTES


def test_an_envelope_over_the_sqs_limit_is_refused(jobkit: Jobkit, no_aws: list[str]) -> None:
    room = SQS_MAX_MESSAGE_BYTES - body_overhead(jobkit)
    with pytest.raises(EnvelopeTooLargeError) as caught:
        jobkit.enqueue(BLOB, {"blob": "x" * (room + 1)}, job_id="big")
    message = str(caught.value)
    assert "262,145 bytes" in message
    assert "262,144" in message
    assert "test.unit.blob" in message
    assert no_aws == []


def test_the_size_limit_counts_bytes_not_characters(jobkit: Jobkit) -> None:
    room = SQS_MAX_MESSAGE_BYTES - body_overhead(jobkit)
    # "é" is 2 bytes in UTF-8 but is sent as-is (not \u-escaped) by the envelope's JSON
    body = jobkit._prepare(BLOB, {"blob": "é"}, "big", None).body
    per_char = len(body.encode()) - body_overhead(jobkit)
    with pytest.raises(EnvelopeTooLargeError):
        jobkit.enqueue(BLOB, {"blob": "é" * (room // per_char + 1)}, job_id="big")


@pytest.mark.parametrize("delay", [901, 900.5, timedelta(minutes=16), timedelta(days=1)], ids=str)
def test_a_delay_over_900_seconds_needs_the_scheduler_configured(
    jobkit: Jobkit, no_aws: list[str], delay: float | timedelta
) -> None:
    # Given no JOBKIT_SCHEDULE_GROUP / JOBKIT_SCHEDULER_ROLE_ARN, a long delay is a clear error
    with pytest.raises(ConfigurationError, match="JOBKIT_SCHEDULE_GROUP"):
        jobkit.enqueue(BLOB, {}, job_id="late", delay=delay)
    assert no_aws == []


@pytest.mark.parametrize("delay", [-1, -0.001, timedelta(seconds=-5)], ids=str)
def test_a_negative_delay_is_refused(
    jobkit: Jobkit, no_aws: list[str], delay: float | timedelta
) -> None:
    with pytest.raises(InvalidScheduleError, match="negative"):
        jobkit.enqueue(BLOB, {}, job_id="past", delay=delay)
    assert no_aws == []


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(None, 0), (0, 0), (0.2, 1), (899.01, 900), (900, 900), (timedelta(minutes=15), 900)],
    ids=str,
)
def test_accepted_delays_round_up_to_whole_seconds(
    jobkit: Jobkit, delay: float | timedelta | None, seconds: int
) -> None:
    assert jobkit._prepare(BLOB, {}, "ok", delay).delay_seconds == seconds


def test_run_at_must_be_timezone_aware_and_exclusive_with_delay(
    jobkit: Jobkit, no_aws: list[str]
) -> None:
    with pytest.raises(InvalidScheduleError, match="timezone-aware"):
        jobkit.enqueue(BLOB, {}, job_id="naive", run_at=datetime(2030, 1, 1))
    with pytest.raises(InvalidScheduleError, match="not both"):
        jobkit.enqueue(BLOB, {}, job_id="both", delay=5, run_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert no_aws == []


def test_run_at_in_the_past_runs_now_and_soon_waits_in_sqs(jobkit: Jobkit) -> None:
    past = jobkit._prepare(BLOB, {}, "p", None, datetime(2020, 1, 1, tzinfo=UTC))
    assert (past.due, past.delay_seconds, past.envelope.not_before) == (None, 0, None)
    soon_at = client_module.utcnow() + timedelta(seconds=120)  # the fixture pins the clock
    soon = jobkit._prepare(BLOB, {}, "s", None, soon_at)
    assert soon.due == soon_at
    assert soon.envelope.not_before == soon_at
    assert soon.schedule is None
    assert 119 <= soon.delay_seconds <= 120


def test_an_invalid_payload_is_refused_before_aws(jobkit: Jobkit, no_aws: list[str]) -> None:
    with pytest.raises(JobValidationError, match="blob"):
        jobkit.enqueue(BLOB, {"blob": 42}, job_id="bad")
    assert no_aws == []


def test_an_unknown_type_is_refused_before_aws(jobkit: Jobkit, no_aws: list[str]) -> None:
    with pytest.raises(UnknownJobTypeError, match=r"test\.unit\.blob"):
        jobkit.enqueue("test.unit.missing", {})
    assert no_aws == []


def test_a_queue_without_url_is_refused_before_aws(no_aws: list[str]) -> None:
    jobkit = Jobkit(Settings(table="t", queues={"other": "https://example.invalid/o"}))
    with pytest.raises(ConfigurationError, match="'email'"):
        jobkit.enqueue(BLOB, {}, job_id="nowhere")
    assert no_aws == []


def test_a_client_without_table_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="JOBKIT_TABLE"):
        Jobkit(Settings())


def test_enqueue_many_with_only_invalid_requests_touches_nothing(
    jobkit: Jobkit, no_aws: list[str]
) -> None:
    result = jobkit.enqueue_many(
        [
            EnqueueRequest(BLOB, {"blob": 1}, job_id="a"),
            EnqueueRequest(BLOB, {}, job_id="b", delay=1000),
            EnqueueRequest("test.unit.missing", {}, job_id="c"),
        ]
    )
    assert [o.job_id for o in result.failed] == ["a", "b", "c"]
    assert all(o.error for o in result.failed)
    assert result.created == [] and result.existing == []
    assert no_aws == []


def test_the_envelope_carries_the_validated_payload(jobkit: Jobkit) -> None:
    prepared = jobkit._prepare(BLOB, BlobPayload(blob="hi"), "e", None)
    assert prepared.envelope.payload == {"blob": "hi"}
    assert prepared.envelope.enqueued_at == NOW
    assert prepared.given_id is True
    assert jobkit._prepare(BLOB, {}, None, None).given_id is False
