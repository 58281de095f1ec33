"""The Jobs HTTP API's operator routes on a mock_aws stack: list jobs a page at a time, retry,
run now, retry and cancel in bulk, the queue overview and health, pause and resume, dead
letters (list, peek, redrive part, purge) and recurring schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
import time_machine

from jobkit import JobState
from jobkit.client import Jobkit
from jobkit_apps.http_api.resolver import build_app
from tests.conftest import Stack, scheduling_client

from .http_api_support import Api
from .test_core_support import ECHO, OTHER, Runs, payload
from .test_dead_letter_calls import fail_job
from .test_queue_pause import mapping_of, state_of


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api.over(stack)


@pytest.fixture
def dead(stack: Stack) -> Stack:
    """Failed jobs with their dead letters: a-1, a-2 (echo), b-1 (other)."""
    runs = Runs()
    fail_job(stack, runs, "a-1", "partner said no")
    fail_job(stack, runs, "a-2", "quota exceeded")
    fail_job(stack, runs, "b-1", "partner said no", OTHER)
    return stack


def test_jobs_are_listed_a_page_at_a_time_each_once_newest_first(api: Api, stack: Stack) -> None:
    # Given five scheduled jobs
    for n in range(5):
        stack.client.enqueue(ECHO, payload(n), job_id=f"later-{n}", delay=600)
    # When they are listed two at a time, following next_token
    seen: list[str] = []
    query = "state=scheduled&limit=2"
    while True:
        status, page = api.call("GET", "/jobs", query=query)
        assert status == 200 and len(page["jobs"]) <= 2
        seen += [job["id"] for job in page["jobs"]]
        if page["next_token"] is None:
            break
        query = f"state=scheduled&limit=2&page_token={page['next_token']}"
    # Then each comes once, newest first, with its address masked
    assert seen == [f"later-{n}" for n in reversed(range(5))]
    assert api.call("GET", "/jobs", query="state=scheduled&limit=1")[1]["jobs"][0]["payload"][
        "to"
    ].startswith("a***@")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("page_token=not-a-token", "invalid_request"),
        ("state=sleeping", "invalid_request"),
        ("limit=0", "invalid_request"),
        ("created_after=2030-01-01T00:00:00", "invalid_request"),  # no UTC offset
    ],
)
def test_bad_list_filters_are_refused(api: Api, query: str, code: str) -> None:
    status, body = api.call("GET", "/jobs", query=query)
    assert status in (400, 422) and body["error"]["code"] == code


def test_a_time_filter_narrows_the_list(api: Api, stack: Stack) -> None:
    # Given a scheduled job
    stack.client.enqueue(ECHO, payload(), job_id="later", delay=600)
    # When jobs created after a time in the future are listed, Then there is none
    future = "created_after=2100-01-01T00:00:00%2B00:00&state=scheduled"
    assert api.call("GET", "/jobs", query=future)[1]["jobs"] == []
    past = "created_after=2000-01-01T00:00:00Z&state=scheduled"
    assert [j["id"] for j in api.call("GET", "/jobs", query=past)[1]["jobs"]] == ["later"]


def test_retry_and_run_now(api: Api, dead: Stack) -> None:
    # When a failed job is retried, Then it is queued again with fresh attempts
    status, job = api.call("POST", "/jobs/a-1/retry")
    assert (status, job["state"], job["attempts"]) == (200, "queued", 0)
    # And a job that is not failed cannot be: 409
    assert api.call("POST", "/jobs/a-1/retry")[0] == 409
    # When a scheduled job is run now, Then it is queued
    dead.client.enqueue(ECHO, payload(), job_id="later", delay=600)
    status, job = api.call("POST", "/jobs/later/run-now")
    assert (status, job["state"]) == (200, "queued")
    assert api.call("POST", "/jobs/nobody/run-now")[1]["error"]["code"] == "job_not_found"


def test_bulk_retry_dry_run_then_for_real(api: Api, dead: Stack) -> None:
    # When a bulk retry of the echo type is only tried
    status, dry = api.call("POST", "/bulk/retry", {"job_type": ECHO.name, "dry_run": True})
    # Then it names the two echo jobs and changes nothing
    assert status == 200 and sorted(dry["matched"]) == ["a-1", "a-2"] and dry["done"] == []
    assert dead.client.get_job("a-1").state is JobState.FAILED  # type: ignore[union-attr]
    # When it is done for real, Then both are retried
    status, done = api.call("POST", "/bulk/retry", {"job_type": ECHO.name})
    assert sorted(done["done"]) == ["a-1", "a-2"] and done["failed"] == []
    # And a bulk action with no filter (and no `all`) is refused
    status, body = api.call("POST", "/bulk/cancel", {})
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def test_bulk_cancel_by_id_prefix(api: Api, stack: Stack) -> None:
    stack.client.enqueue(ECHO, payload(1), job_id="later-1", delay=600)
    stack.client.enqueue(ECHO, payload(2), job_id="other-1", delay=600)
    status, result = api.call("POST", "/bulk/cancel", {"id_prefix": "later-"})
    assert (status, result["done"]) == (200, ["later-1"])
    assert stack.client.get_job("other-1").state is JobState.SCHEDULED  # type: ignore[union-attr]


def test_bulk_cancel_by_created_time_alone(api: Api, stack: Stack) -> None:
    # Given a scheduled job enqueued before a moment, and one after it
    stack.client.enqueue(ECHO, payload(1), job_id="early-1", delay=600)
    moment = stack.client.get_job("early-1").created_at + timedelta(milliseconds=1)  # type: ignore[union-attr]
    with time_machine.travel(moment + timedelta(seconds=1), tick=False):
        stack.client.enqueue(ECHO, payload(2), job_id="late-1", delay=600)
    # When the jobs enqueued after the moment are cancelled (a bound is a filter on its own)
    after = moment.isoformat()
    status, result = api.call("POST", "/bulk/cancel", {"created_after": after})
    # Then only the later one is cancelled
    assert (status, result["done"]) == (200, ["late-1"])
    assert stack.client.get_job("early-1").state is JobState.SCHEDULED  # type: ignore[union-attr]
    # And a time without its UTC offset is refused, and nothing else is cancelled
    status, body = api.call("POST", "/bulk/cancel", {"created_before": "2026-11-01T00:00:00"})
    assert status == 422, body
    assert stack.client.get_job("early-1").state is JobState.SCHEDULED  # type: ignore[union-attr]


def _age_metric(queue: str, seconds: float) -> None:
    """What SQS publishes each minute: the age of the queue's oldest message."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue}],
                "Timestamp": datetime.now(UTC),
                "Value": seconds,
                "Unit": "Seconds",
            }
        ],
    )


def test_queues_and_health_follow_the_oldest_message(api: Api, stack: Stack) -> None:
    # Given a waiting job and no metric yet
    stack.client.enqueue(ECHO, payload(), job_id="waiting")
    status, overview = api.call("GET", "/queues")
    assert status == 200
    (email,) = overview["queues"]
    assert (email["queue"], email["waiting"], email["oldest_age_seconds"]) == ("email", 1, None)
    assert set(overview["states"]) == {"scheduled", "retrying", "failed", "cancelled"}
    # Then health is 200: an age not known yet is no alarm
    status, health = api.call("GET", "/health")
    assert (status, health["healthy"], health["max_age_seconds"]) == (200, True, 300)
    # When the oldest message has waited 10 minutes
    _age_metric("email", 600)
    # Then health is 503, and says which queue and how old
    status, health = api.call("GET", "/health")
    assert status == 503 and health["healthy"] is False
    assert health["queues"] == [
        {"queue": "email", "waiting": 1, "oldest_age_seconds": 600.0, "healthy": False}
    ]
    # And with a threshold of 15 minutes it is healthy again
    assert api.call("GET", "/health", query="max_age_seconds=900")[0] == 200


def test_pause_and_resume_a_queue(api: Api, stack: Stack) -> None:
    uuid = mapping_of(stack)
    status, paused = api.call("POST", "/queues/email/pause")
    assert (status, paused) == (200, {"queue": "email", "paused": True, "mappings": ["Disabled"]})
    assert state_of(uuid) == "Disabled"
    assert api.call("POST", "/queues/email/resume")[1]["mappings"] == ["Enabled"]
    assert state_of(uuid) == "Enabled"
    status, body = api.call("POST", "/queues/nowhere/pause")
    assert (status, body["error"]["code"]) == (404, "unknown_queue")


def test_dead_letters_listed_peeked_redriven_by_filter_and_purged(api: Api, dead: Stack) -> None:
    # When the email queue's dead letters are listed
    status, letters = api.call("GET", "/queues/email/dead-letters")
    # Then each is there with its job and reason, its address masked
    assert status == 200
    assert sorted(d["job_id"] for d in letters) == ["a-1", "a-2", "b-1"]
    assert all("ada.lovelace@" not in d["body"] for d in letters)
    # And one is found by its message id, an unknown one is a 404
    first = letters[0]
    path = f"/queues/email/dead-letters/{first['message_id']}"
    assert api.call("GET", path)[1]["job_id"] == first["job_id"]
    assert api.call("GET", "/queues/email/dead-letters/nope")[0] == 404
    # When those whose reason says "quota" are redriven, after a dry run
    redrive = "/queues/email/dead-letters/redrive"
    dry = api.call("POST", redrive, {"reason_contains": "quota", "dry_run": True})[1]
    assert (dry["matched"], dry["moved"], dry["dry_run"]) == (1, 0, True)
    status, moved = api.call("POST", redrive, {"reason_contains": "quota"})
    # Then that one moved, its job queued again, and the others stay
    assert (status, moved["moved"], moved["left"]) == (200, 1, 2)
    assert dead.client.get_job("a-2").state is JobState.QUEUED  # type: ignore[union-attr]
    # When the DLQ is purged, Then it is (SQS says it purges)
    assert api.call("DELETE", "/queues/email/dead-letters") == (
        200,
        {"queue": "email", "purging": True},
    )


def test_recurring_schedules_are_listed_with_payloads_masked(stack: Stack) -> None:
    # Given a client whose stack has a recurring group, and a schedule in it
    client = scheduling_client(stack, "recurring", "recurring_group")
    client.schedule("digest", "0 9 ? * MON *", ECHO, payload(), timezone="Europe/Berlin")
    api = Api(build_app(lambda: Jobkit(client.settings)))
    # When the schedules are listed
    status, found = api.call("GET", "/schedules")
    # Then it is there, enabled, with its next run, and its address masked
    assert status == 200
    ((schedule),) = found
    assert (schedule["name"], schedule["state"]) == ("digest", "ENABLED")
    assert schedule["next_run"] is not None
    assert schedule["payload"]["to"].startswith("a***@")
