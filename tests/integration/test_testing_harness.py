"""jobkit_tools.testing: jobs run inline against moto while a virtual clock skips through the
waits."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import boto3
import pytest
from pydantic import BaseModel

import jobkit
from email_worker import processors as email_processors
from email_worker.settings import get_email_settings
from jobkit import Backoff, JobState, JobType, PermanentError, TransientError
from jobkit import aws as jobkit_aws
from jobkit.worker import JobContext, Worker
from jobkit_apps.email import SEND_WELCOME
from jobkit_tools.testing import DEFAULT_START, Harness, HarnessError

QUEUE = "harness"


class Note(BaseModel):
    n: int = 0


# Backoff from 10 s: attempt 1 waits 5-10 s, attempt 2 waits 10-20 s ("equal jitter").
TICK = JobType(
    "test.harness.tick", Note, queue=QUEUE, max_attempts=3, backoff=Backoff(10, 300), timeout=10
)


@dataclass
class Runs:
    """The processor of TICK: records when each attempt ran, then does what it is told."""

    failures: list[Exception] = field(default_factory=list)
    calls: list[tuple[str, int, datetime]] = field(default_factory=list)
    remaining: list[float] = field(default_factory=list)

    def __call__(self, payload: Note, ctx: JobContext) -> dict[str, int]:
        self.calls.append((ctx.job_id, ctx.attempt, datetime.now(UTC)))
        self.remaining.append(ctx.remaining_time())
        if self.failures:
            raise self.failures.pop(0)
        return {"n": payload.n}


@pytest.fixture
def runs(jobkit_harness: Harness) -> Runs:
    runs = Runs()
    worker = Worker(QUEUE)
    worker.processor(TICK)(runs)
    jobkit_harness.register(worker)
    return runs


def schedules(harness: Harness) -> list[str]:
    listed = boto3.client("scheduler").list_schedules(GroupName=harness.settings.schedule_group)
    return [s["Name"] for s in listed["Schedules"]]


def test_a_job_delayed_two_hours_runs_at_its_due_time_to_the_second(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a job enqueued to run in two hours (an EventBridge Scheduler schedule)
    job = jobkit_harness.client.enqueue(TICK, {"n": 1}, job_id="later", delay=timedelta(hours=2))
    due = job.run_at
    assert due == DEFAULT_START + timedelta(hours=2)
    assert len(schedules(jobkit_harness)) == 1
    # When the clock reaches a second before it is due
    jobkit_harness.run_until(due - timedelta(seconds=1))
    # Then the schedule has fired (a minute early, as Scheduler may) but the job has not run
    assert schedules(jobkit_harness) == []
    assert runs.calls == []
    waiting = jobkit_harness.job("later")
    assert (waiting.state, waiting.attempts) == (JobState.SCHEDULED, 0)
    # When that second passes
    jobkit_harness.advance(1)
    # Then it runs once, at its due time to the second, and the clock stands at the target
    assert [(job_id, attempt) for job_id, attempt, _ in runs.calls] == [("later", 1)]
    done = jobkit_harness.job("later")
    assert done.state == JobState.SUCCEEDED and done.started_at is not None
    assert timedelta(0) <= done.started_at - due < timedelta(seconds=1)
    assert jobkit_harness.now == due
    # and the frozen clock left the job its whole timeout (time.monotonic is real time)
    assert 9 < runs.remaining[0] <= 10


def test_a_job_delayed_ten_minutes_waits_in_sqs_and_runs_when_due(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a job due in ten minutes (SQS DelaySeconds, no schedule)
    job = jobkit_harness.client.enqueue(TICK, {}, job_id="soon", delay=timedelta(minutes=10))
    assert job.run_at is not None
    assert schedules(jobkit_harness) == []
    # When nine minutes and 59 seconds pass
    jobkit_harness.advance(timedelta(minutes=10) - timedelta(seconds=1))
    # Then it has not run
    assert runs.calls == []
    assert jobkit_harness.job("soon").state == JobState.SCHEDULED
    # When the last second passes, it runs at its due time
    jobkit_harness.advance(1)
    (call,) = runs.calls
    assert timedelta(0) <= call[2] - job.run_at < timedelta(seconds=1)
    assert jobkit_harness.job("soon").state == JobState.SUCCEEDED


def test_transient_failures_are_retried_after_the_job_types_backoff(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a processor that fails transiently twice, then succeeds
    runs.failures = [TransientError("partner down"), TransientError("partner still down")]
    jobkit_harness.client.enqueue(TICK, {"n": 7}, job_id="flaky")
    # When an hour passes
    jobkit_harness.advance(timedelta(hours=1))
    # Then it took three attempts, each after the backoff of the one before
    assert [attempt for _, attempt, _ in runs.calls] == [1, 2, 3]
    first, second, third = (at for _, _, at in runs.calls)
    assert first == DEFAULT_START
    assert 5 <= (second - first).total_seconds() <= 10.01
    assert 10 <= (third - second).total_seconds() <= 20.01
    job = jobkit_harness.job("flaky")
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 3, {"n": 7})
    assert jobkit_harness.dead_letters(QUEUE) == []


def test_a_cancelled_scheduled_job_never_runs(jobkit_harness: Harness, runs: Runs) -> None:
    # Given a job due in three days and one due in ten minutes, both cancelled a day early
    jobkit_harness.client.enqueue(TICK, {}, job_id="far", run_at=DEFAULT_START + timedelta(days=3))
    jobkit_harness.client.enqueue(TICK, {}, job_id="near", delay=600)
    jobkit_harness.client.cancel("near")
    jobkit_harness.advance(timedelta(days=2))
    jobkit_harness.client.cancel("far")
    # When a week passes
    jobkit_harness.advance(timedelta(days=7))
    # Then neither ran, both are cancelled, and nothing was dead-lettered
    assert runs.calls == []
    assert jobkit_harness.job("far").state == JobState.CANCELLED
    assert jobkit_harness.job("near").state == JobState.CANCELLED
    assert jobkit_harness.dead_letters(QUEUE) == []


def test_a_permanently_failing_job_lands_in_the_dead_letter_queue(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a processor that fails permanently, and one that never stops failing transiently
    runs.failures = [PermanentError("invoice 42 not found")] + [
        TransientError(f"down {i}") for i in range(3)
    ]
    jobkit_harness.client.enqueue(TICK, {}, job_id="doomed")
    jobkit_harness.run_until_idle()
    jobkit_harness.client.enqueue(TICK, {}, job_id="hopeless")
    # When the stack runs until nothing is left to do
    jobkit_harness.run_until_idle()
    # Then both are failed and in the DLQ with their reasons, and stay there when read again
    doomed, hopeless = jobkit_harness.dead_letters(QUEUE)
    assert (doomed.job_id, doomed.reason) == ("doomed", "invoice 42 not found")
    assert hopeless.job_id == "hopeless"
    assert hopeless.reason is not None and hopeless.reason.startswith("attempts exhausted (3)")
    assert hopeless.envelope()["dead_letter"]["reason"] == hopeless.reason
    assert len(jobkit_harness.dead_letters(QUEUE)) == 2
    assert jobkit_harness.job("doomed").attempts == 1
    assert (jobkit_harness.job("hopeless").state, jobkit_harness.job("hopeless").attempts) == (
        JobState.FAILED,
        3,
    )


@pytest.fixture
def email_worker(jobkit_harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """The email function's worker, its sender verified in moto's SES."""
    monkeypatch.setenv("EMAIL_FROM_ADDRESS", "no-reply@jobkit.example.com")
    get_email_settings.cache_clear()
    boto3.client("sesv2").create_email_identity(EmailIdentity="no-reply@jobkit.example.com")
    yield jobkit_harness.register(email_processors.worker)
    get_email_settings.cache_clear()


def test_seven_days_of_jobs_run_in_milliseconds(
    jobkit_harness: Harness, email_worker: Worker, runs: Runs
) -> None:
    # Given welcome emails due on days 1, 3, 5 and 7, and a job that retries twice in between
    days = [1, 3, 5, 7]
    for day in days:
        jobkit_harness.client.enqueue(
            SEND_WELCOME,
            {"to": f"day{day}@example.com", "name": "Ada"},
            job_id=f"welcome-{day}",
            run_at=DEFAULT_START + timedelta(days=day),
        )
    runs.failures = [TransientError("once"), TransientError("twice")]
    jobkit_harness.client.enqueue(TICK, {}, job_id="retried", delay=timedelta(days=2))
    # When seven days pass
    started = time.perf_counter()
    jobkit_harness.advance(timedelta(days=7))
    elapsed = time.perf_counter() - started
    print(f"7 virtual days: {elapsed * 1000:.0f} ms, {jobkit_harness.invocations} invocations")
    # Then each email went out on its day, and the retried job succeeded on day 2
    sent = jobkit_harness.sent_emails()
    assert [m.to for m in sent] == [[f"day{day}@example.com"] for day in days]
    assert all(m.source == "no-reply@jobkit.example.com" and m.subject for m in sent)
    for day in days:
        job = jobkit_harness.job(f"welcome-{day}")
        assert job.state == JobState.SUCCEEDED and job.started_at is not None
        assert job.started_at - (DEFAULT_START + timedelta(days=day)) < timedelta(seconds=1)
    assert jobkit_harness.job("retried").attempts == 3
    assert jobkit_harness.now == DEFAULT_START + timedelta(days=7)


STEP = JobType("test.harness.step", Note, queue=QUEUE, timeout=10)


def test_jobs_that_enqueue_the_next_one_run_as_a_sequence_over_days(
    jobkit_harness: Harness,
) -> None:
    # Given a step that enqueues the next one two days later with jobkit.enqueue (the
    # environment's producer, as a deployed function has it), four steps in all
    ran: list[tuple[int, datetime]] = []

    def step(payload: Note, ctx: JobContext) -> None:
        ran.append((payload.n, datetime.now(UTC)))
        if payload.n < 4:
            jobkit.enqueue(STEP, {"n": payload.n + 1}, delay=timedelta(days=2))

    worker = Worker(QUEUE)
    worker.processor(STEP)(step)
    jobkit_harness.register(worker)
    jobkit.enqueue(STEP, {"n": 1})
    # When the stack runs until nothing is left to do
    reached = jobkit_harness.run_until_idle()
    # Then the steps ran on days 0, 2, 4 and 6, each within a second of its due time (the
    # worker hides an early delivery for whole seconds; moto shows it 1 ms after that), and
    # then the clock stopped
    assert [n for n, _ in ran] == [1, 2, 3, 4]
    previous = DEFAULT_START
    for n, at in ran:
        due = previous + timedelta(days=2) if n > 1 else DEFAULT_START
        assert timedelta(0) <= at - due <= timedelta(seconds=1, milliseconds=1)
        previous = at
    assert reached == ran[-1][1]


def test_a_cron_schedule_fires_at_each_occurrence(jobkit_harness: Harness, runs: Runs) -> None:
    # Given a Scheduler schedule that sends a job every day at 10:00 UTC
    envelope = {
        "v": 1,
        "id": "daily@<aws.scheduler.scheduled-time>",
        "type": TICK.name,
        "payload": {"n": 1},
        "enqueued_at": DEFAULT_START.isoformat(),
    }
    boto3.client("scheduler").create_schedule(
        Name="daily",
        GroupName=jobkit_harness.settings.schedule_group,
        ScheduleExpression="cron(0 10 * * ? *)",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}",
            "RoleArn": jobkit_harness.settings.scheduler_role_arn,
            "Input": json.dumps(envelope),
        },
    )
    # When three days pass
    jobkit_harness.advance(timedelta(days=3))
    # Then it ran three times, each at 10:00, as the job of that occurrence
    assert [(job_id, at) for job_id, _, at in runs.calls] == [
        (f"daily@2026-03-0{d}T10:00:00Z", datetime(2026, 3, d, 10, tzinfo=UTC)) for d in (2, 3, 4)
    ]
    # and a recurring schedule never lets the stack go idle
    with pytest.raises(HarnessError, match="still busy"):
        jobkit_harness.run_until_idle(limit=timedelta(days=2))


def test_a_message_hidden_through_an_unwatched_client_is_reported_then_watched(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a job sent straight to SQS with a delay, by a client the harness does not watch
    body = json.dumps(
        {"v": 1, "id": "raw", "type": TICK.name, "payload": {}, "enqueued_at": str(DEFAULT_START)}
    )
    own = boto3.session.Session().client("sqs")
    own.send_message(QueueUrl=jobkit_harness.queue_url(QUEUE), MessageBody=body, DelaySeconds=60)
    # When the stack runs until idle, then it says it cannot know when that message shows
    with pytest.raises(HarnessError, match="not told"):
        jobkit_harness.run_until_idle()
    # When that client is watched, the next such message runs when it shows
    jobkit_harness.watch(own)
    own.send_message(QueueUrl=jobkit_harness.queue_url(QUEUE), MessageBody=body, DelaySeconds=90)
    jobkit_harness.run_until_idle()
    assert [(job_id, at - DEFAULT_START) for job_id, _, at in runs.calls] == [
        ("raw", timedelta(seconds=90, milliseconds=1))
    ]


def test_the_harness_ignores_the_machines_aws_settings_and_puts_them_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a machine pointed at a real-looking endpoint and profile
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("JOBKIT_TABLE", "prod-jobs")
    real_before = time.time()
    # When a harness runs a job
    with Harness(start=datetime(2030, 1, 1, tzinfo=UTC), region="us-west-2") as harness:
        worker = Worker(QUEUE)
        worker.processor(TICK)(lambda payload, ctx: {"ok": True})
        harness.register(worker)
        harness.client.enqueue(TICK, {}, job_id="isolated", delay=30)
        harness.advance(60)
        assert harness.job("isolated").state == JobState.SUCCEEDED
        assert harness.queue_url(QUEUE).startswith("https://sqs.us-west-2.")
        assert datetime.now(UTC) == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    # Then the machine's settings, clock and clients are as they were
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert os.environ["AWS_PROFILE"] == "production"
    assert os.environ["JOBKIT_TABLE"] == "prod-jobs"
    assert "JOBKIT_QUEUES" not in os.environ
    assert real_before <= time.time() < real_before + 60
    assert jobkit_aws._clients == {}
    assert worker.use_settings(None) is None  # the worker's own settings back


def ran(runs: Runs) -> list[str]:
    return [job_id for job_id, _, _ in runs.calls]


def test_a_resumed_cron_schedule_runs_only_the_slots_after_its_resume(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a daily 10:00 schedule, made on Monday at 09:00, that ran on Monday
    jobkit_harness.client.schedule("daily", "cron(0 10 * * ? *)", TICK, {"n": 1})
    jobkit_harness.advance(timedelta(hours=2))
    assert ran(runs) == ["daily@2026-03-02T10:00:00Z"]

    # When it is paused for three days (Tuesday, Wednesday and Thursday 10:00 pass), resumed on
    # Thursday at 11:00, and two more days pass
    jobkit_harness.client.pause_schedule("daily")
    jobkit_harness.advance(timedelta(days=3))
    resumed = jobkit_harness.client.resume_schedule("daily")
    jobkit_harness.advance(timedelta(days=2))

    # Then it ran on Friday and Saturday: none of the slots it missed while paused, not even
    # the latest, and its next run was Friday's as resume said
    assert resumed.next_run == datetime(2026, 3, 6, 10, tzinfo=UTC)
    assert ran(runs) == [f"daily@2026-03-0{d}T10:00:00Z" for d in (2, 6, 7)]


def test_a_resumed_rate_schedule_runs_every_period_from_its_creation_after_the_resume(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given rate(1 hour) made at 09:00, that ran at 10:00, and was paused at 10:30
    jobkit_harness.client.schedule("hourly", "rate(1 hour)", TICK, {})
    jobkit_harness.advance(timedelta(minutes=90))
    jobkit_harness.client.pause_schedule("hourly")

    # When it is resumed at 13:15 (11:00, 12:00 and 13:00 passed), and the clock reaches 15:30
    jobkit_harness.advance(timedelta(hours=2, minutes=45))
    jobkit_harness.client.resume_schedule("hourly")
    jobkit_harness.advance(timedelta(hours=2, minutes=15))

    # Then after 10:00 it ran at 14:00 and 15:00 only, still on the hour of its creation
    assert ran(runs) == [f"hourly@2026-03-02T{h}:00:00Z" for h in (10, 14, 15)]


def test_a_paused_schedule_declared_again_stays_paused(jobkit_harness: Harness, runs: Runs) -> None:
    # Given a daily schedule, paused
    jobkit_harness.client.schedule("daily", "cron(0 10 * * ? *)", TICK, {"n": 1})
    jobkit_harness.client.pause_schedule("daily")

    # When it is declared again with another payload (as start-up code does), and days pass
    again = jobkit_harness.client.schedule("daily", "cron(0 10 * * ? *)", TICK, {"n": 2})
    jobkit_harness.advance(timedelta(days=2))

    # Then it is still paused and never ran
    assert again.state == "DISABLED" and again.next_run is None
    assert runs.calls == []


def test_a_schedule_runs_only_between_its_start_and_its_end(
    jobkit_harness: Harness, runs: Runs
) -> None:
    # Given a daily 10:00 schedule from Wednesday 00:00 in Berlin to Friday 11:00 in Berlin
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 4, 0, 0, tzinfo=berlin)
    end = datetime(2026, 3, 6, 11, 0, tzinfo=berlin)  # 10:00 UTC: Friday's run is the last
    made = jobkit_harness.client.schedule(
        "window", "cron(0 10 * * ? *)", TICK, {}, start=start, end=end
    )

    # When a week passes
    jobkit_harness.advance(timedelta(days=7))

    # Then it ran on Wednesday, Thursday and Friday (its end, to the minute), and has no next run
    assert (made.start, made.end) == (start, end)
    assert made.next_run == datetime(2026, 3, 4, 10, tzinfo=UTC)
    assert ran(runs) == [f"window@2026-03-0{d}T10:00:00Z" for d in (4, 5, 6)]
    assert jobkit_harness.client.get_schedule("window").next_run is None
