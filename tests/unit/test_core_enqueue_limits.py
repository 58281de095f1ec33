"""What enqueue refuses before it touches AWS: size and delay limits, bad input, bad settings."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from jobkit import (
    ConfigurationError,
    EnqueueRequest,
    EnvelopeTooLargeError,
    InvalidScheduleError,
    JobType,
    JobValidationError,
    UnknownJobTypeError,
    producer_calls,
)
from jobkit.client import Jobkit
from jobkit.errors import DeclarationError, InvalidJobIdError, InvalidRequestError
from jobkit.models import SQS_MAX_MESSAGE_BYTES, Envelope, check_job_id
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
    monkeypatch.setattr(producer_calls, "utcnow", lambda: NOW)
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
    soon_at = producer_calls.utcnow() + timedelta(seconds=120)  # the fixture pins the clock
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
    assert prepared.envelope.id == "e"
    generated = jobkit._prepare(BLOB, {}, None, None).envelope.id
    assert len(generated) == 32 and generated != jobkit._prepare(BLOB, {}, None, None).envelope.id


BAD_IDS = ["", " ", "   ", "a b", "tab\tid", "new\nline", "nul\x00", "é-id", "x" * 513]


@pytest.mark.parametrize("job_id", BAD_IDS, ids=repr)
def test_a_bad_job_id_is_refused_before_aws(jobkit: Jobkit, no_aws: list[str], job_id: str) -> None:
    # Given an id that is empty, too long, or has a space, control or non-ASCII character
    # When a job is enqueued with it, Then it is refused as the caller's error, saying why
    with pytest.raises(InvalidJobIdError) as raised:
        jobkit.enqueue(BLOB, {}, job_id=job_id)
    assert isinstance(raised.value, InvalidRequestError)
    assert "job id" in str(raised.value)
    assert no_aws == []


@pytest.mark.parametrize("job_id", BAD_IDS, ids=repr)
def test_a_bad_job_id_is_refused_by_every_call_that_takes_one(
    jobkit: Jobkit, no_aws: list[str], job_id: str
) -> None:
    for call in (jobkit.get_job, jobkit.cancel, jobkit.retry):
        with pytest.raises(InvalidJobIdError):
            call(job_id)
    assert no_aws == []


@pytest.mark.parametrize(
    "job_id", ["a", "x" * 512, "invite-42", "order:1234/receipt@2026-01-01T00:00:00Z", "!~"]
)
def test_the_job_id_alphabet_is_visible_ascii_up_to_512(job_id: str) -> None:
    assert check_job_id(job_id) == job_id


def test_an_envelope_with_a_bad_id_is_not_an_envelope() -> None:
    # Given a raw message whose id a producer in another language got wrong
    for job_id in BAD_IDS:
        body = json.dumps(
            {"v": 1, "id": job_id, "type": "t", "payload": {}, "enqueued_at": NOW.isoformat()}
        )
        # When the worker reads it, Then it is refused like any message that is not a job
        with pytest.raises(PydanticValidationError):
            Envelope.model_validate_json(body)


def test_bad_ids_in_enqueue_many_are_reported_not_raised(jobkit: Jobkit, no_aws: list[str]) -> None:
    # Given a batch of requests with an over-long and an empty id
    requests = [EnqueueRequest(BLOB, {}, job_id="x" * 600), EnqueueRequest(BLOB, {}, job_id="")]
    # When it is enqueued, Then each has its own error, the call does not raise or reach AWS
    result = jobkit.enqueue_many(requests)
    assert [o.index for o in result.failed] == [0, 1]
    assert all(o.error and "job id" in o.error for o in result.failed)
    assert no_aws == []


@pytest.mark.parametrize(
    ("delay", "says"),
    [
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (1e12, "365 days"),
        (timedelta(days=366), "365 days"),
        (timedelta.max, "365 days"),
        ("5", "a number"),
        (True, "a number"),
    ],
    ids=repr,
)
def test_a_delay_that_is_not_a_finite_time_within_a_year_is_refused(
    jobkit: Jobkit, no_aws: list[str], delay: Any, says: str
) -> None:
    with pytest.raises(InvalidScheduleError, match=says):
        jobkit.enqueue(BLOB, {}, job_id="odd-delay", delay=delay)
    assert no_aws == []


def test_a_run_at_more_than_a_year_ahead_is_refused(jobkit: Jobkit, no_aws: list[str]) -> None:
    with pytest.raises(InvalidScheduleError, match="365 days"):
        jobkit.enqueue(BLOB, {}, job_id="far", run_at=NOW + timedelta(days=400))
    with pytest.raises(InvalidScheduleError, match="365 days"):
        jobkit.enqueue(BLOB, {}, job_id="far", run_at=datetime.max.replace(tzinfo=UTC))
    assert no_aws == []


def test_listing_an_unknown_state_is_the_callers_error(jobkit: Jobkit, no_aws: list[str]) -> None:
    with pytest.raises(InvalidRequestError, match="unknown state 'done'"):
        jobkit.list_jobs(state="done")
    with pytest.raises(InvalidRequestError, match="limit"):
        jobkit.list_jobs(limit=0)
    assert no_aws == []


def test_declaring_a_bad_job_type_is_a_jobkit_error() -> None:
    for kwargs in ({"max_attempts": 0}, {"timeout": 0}, {"timeout": math.inf}):
        with pytest.raises(DeclarationError):
            JobType("test.unit.bad", BlobPayload, queue="email", **kwargs)  # type: ignore[arg-type]
