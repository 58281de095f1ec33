"""The Jobs HTTP API's producer routes and its errors, as API Gateway invokes them (payload 2.0
events) on a mock_aws stack: enqueue per job type, read a job, cancel it; every error is
`{"error": {"code", "message"}}` with its status, and bad input never reaches the job log."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

import jobkit.client
from jobkit import JobState
from jobkit.settings import get_settings
from tests.conftest import Stack, lambda_context, load_function_app

from .http_api_support import INVITE, Api, event, log_items, messages

SEND_INVITE = "/types/email.send_invite/jobs"


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api.over(stack)


def test_enqueue_answers_201_then_200_for_the_same_id_and_sends_once(
    api: Api, stack: Stack
) -> None:
    # When a producer enqueues an invitation with its own id
    status, job = api.call("POST", SEND_INVITE, {"payload": INVITE, "job_id": "invite-42"})
    # Then the job is created (201), queued, and its message is in the queue
    assert status == 201
    assert (job["id"], job["type"], job["state"]) == ("invite-42", "email.send_invite", "queued")
    assert messages(stack) == 1
    # When the same id is enqueued again, with another payload
    other = {**INVITE, "org_name": "Looms"}
    status, again = api.call("POST", SEND_INVITE, {"payload": other, "job_id": "invite-42"})
    # Then it answers 200 with the first job, untouched, and sends nothing more
    assert status == 200
    assert again["payload"]["org_name"] == "Engines"
    assert again["created_at"] == job["created_at"]
    assert messages(stack) == 1


def test_an_enqueue_with_a_delay_is_scheduled(api: Api) -> None:
    # When a job is enqueued to run in 2 minutes
    status, job = api.call("POST", SEND_INVITE, {"payload": INVITE, "delay_seconds": 120})
    # Then it is scheduled, with its due time, under a generated id
    assert status == 201
    assert job["state"] == "scheduled" and job["run_at"] is not None and job["id"]


def test_a_job_is_shown_with_its_addresses_masked(api: Api, stack: Stack) -> None:
    # Given a job whose payload holds an email address
    stack.client.enqueue("email.send_invite", INVITE, job_id="invite-7")
    # When it is read over the API
    status, job = api.call("GET", "/jobs/invite-7")
    # Then it is the job, the address masked as `jobkit status` masks it
    assert status == 200
    assert job["state"] == "queued" and job["payload"]["to"] == "a***@e***.com"
    assert "ada@example.com" not in json.dumps(job)
    # And an id with a slash, percent-encoded in the path, is found too
    stack.client.enqueue("email.send_invite", INVITE, job_id="order:1/receipt")
    assert api.call("GET", "/jobs/order%3A1%2Freceipt")[1]["id"] == "order:1/receipt"


def test_cancel_then_cancel_again_is_a_conflict(api: Api, stack: Stack) -> None:
    # Given a scheduled job
    stack.client.enqueue("email.send_invite", INVITE, job_id="later", delay=600)
    # When it is cancelled, Then it is cancelled
    status, job = api.call("POST", "/jobs/later/cancel")
    assert (status, job["state"]) == (200, "cancelled")
    assert stack.client.get_job("later").state is JobState.CANCELLED  # type: ignore[union-attr]
    # When it is cancelled again, Then that is a 409 saying why
    status, body = api.call("POST", "/jobs/later/cancel")
    assert status == 409
    assert body["error"]["code"] == "invalid_state"
    assert "cancelled" in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "code"),
    [("/jobs/nobody", "job_not_found"), ("/jobs/no%20spaces", "invalid_job_id")],
)
def test_reading_an_unknown_or_malformed_id(api: Api, path: str, code: str) -> None:
    status, body = api.call("GET", path)
    assert (status, body["error"]["code"]) == (404 if code == "job_not_found" else 400, code)


def _invite(**changes: Any) -> dict[str, Any]:
    return {"payload": {**INVITE, **changes}}


LATER = "2030-01-01T09:00:00"
BAD_REQUESTS: list[tuple[str, str, Any, dict[str, Any], int, str]] = [
    # (why, path, body, options, status, code)
    ("an address that is not one", SEND_INVITE, _invite(to="ada@"), {}, 422, "invalid_request"),
    (
        "a field missing",
        SEND_INVITE,
        {"payload": {"to": "ada@example.com"}},
        {},
        422,
        "invalid_request",
    ),
    ("a field the type has not", SEND_INVITE, _invite(cc="x"), {}, 422, "invalid_request"),
    ("no payload", SEND_INVITE, {"job_id": "x"}, {}, 422, "invalid_request"),
    ("an id with a space", SEND_INVITE, {**_invite(), "job_id": "a b"}, {}, 422, "invalid_request"),
    (
        "a negative delay",
        SEND_INVITE,
        {**_invite(), "delay_seconds": -1},
        {},
        422,
        "invalid_request",
    ),
    ("a naive run time", SEND_INVITE, {**_invite(), "run_at": LATER}, {}, 422, "invalid_request"),
    (
        "both delay and run time",
        SEND_INVITE,
        {**_invite(), "delay_seconds": 5, "run_at": LATER + "Z"},
        {},
        400,
        "invalid_schedule",
    ),
    ("a body that is not JSON", SEND_INVITE, b'{"payload": ', {}, 422, "invalid_request"),
    ("a JSON list", SEND_INVITE, [INVITE], {}, 422, "invalid_request"),
    (
        "a body that is not JSON by its type",
        SEND_INVITE,
        _invite(),
        {"content_type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "an unknown job type",
        "/types/email.send_postcard/jobs",
        _invite(),
        {},
        404,
        "unknown_job_type",
    ),
    # a route's rule is a pattern ("." matches "-"): the type must still be the one named
    (
        "a type only a pattern matched",
        "/types/email-send_invite/jobs",
        _invite(),
        {},
        404,
        "unknown_job_type",
    ),
]


@pytest.mark.parametrize(
    ("why", "path", "body", "options", "status", "code"),
    BAD_REQUESTS,
    ids=[bad[0] for bad in BAD_REQUESTS],
)
def test_bad_input_is_refused_in_the_error_shape_and_never_reaches_the_job_log(
    api: Api,
    stack: Stack,
    stdout: pytest.CaptureFixture[str],
    why: str,
    path: str,
    body: Any,
    options: dict[str, Any],
    status: int,
    code: str,
) -> None:
    # When a producer sends a bad enqueue request
    answer_status, answer = api.call("POST", path, body, **options)
    # Then it gets the status and code for it, with a message that does not echo its input
    assert (answer_status, answer["error"]["code"]) == (status, code), answer
    assert set(answer) == {"error"} and answer["error"]["message"]
    assert "ada@" not in answer["error"]["message"]
    # And nothing was written or sent, and no address was logged
    assert log_items() == [] and messages(stack) == 0
    assert "ada@example.com" not in stdout.readouterr().out


def test_an_unknown_route_is_a_404_in_the_error_shape(api: Api) -> None:
    status, body = api.call("GET", "/nowhere")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_an_aws_failure_is_a_503_and_says_so(api: Api) -> None:
    # Given a job log that is gone (an AWS call will fail)
    boto3.client("dynamodb").delete_table(TableName="jobs")
    # When a job is read, Then the answer is a 503 with the AWS error's code
    status, body = api.call("GET", "/jobs/anything")
    assert status == 503
    assert body["error"]["code"] == "aws_error"
    assert "ResourceNotFoundException" in body["error"]["message"]


def test_the_deployed_handler_serves_the_api_from_its_settings(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the API function's environment, as template.yaml sets it
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    monkeypatch.setenv("JOBKIT_PAGES_TABLE", stack.settings.pages_table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(stack.settings.queues))
    monkeypatch.setenv("JOBKIT_TYPES", "tests.integration.test_core_support")
    monkeypatch.setattr(jobkit.client, "_default", None)
    get_settings.cache_clear()
    handler = load_function_app("api").lambda_handler
    # When API Gateway invokes it with an enqueue of a type from JOBKIT_TYPES
    request = event("POST", "/types/test.core.echo/jobs", {"payload": {"to": "ada@example.com"}})
    answer = handler(request, lambda_context("ApiFunction"))
    # Then the job is created in the stack's job log
    assert answer["statusCode"] == 201, answer
    job_id = json.loads(answer["body"])["id"]
    assert stack.client.get_job(job_id) is not None
    get_settings.cache_clear()


def test_the_deployed_handler_logs_a_failure_without_what_the_log_group_says(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, stdout: pytest.CaptureFixture[str]
) -> None:
    # Given the API function, and a job log that is gone
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    monkeypatch.setattr(jobkit.client, "_default", None)
    get_settings.cache_clear()
    handler = load_function_app("api").lambda_handler
    boto3.client("dynamodb").delete_table(TableName="jobs")
    # When a job is read
    answer = handler(event("GET", "/jobs/anything"), lambda_context("ApiFunction"))
    # Then the 503 is logged once, with its code and the request id, not the function's name
    assert answer["statusCode"] == 503
    (line,) = [json.loads(x) for x in stdout.readouterr().out.splitlines() if "aws_error" in x]
    assert line["level"] == "WARNING" and line["function_request_id"]
    assert not {"function_name", "function_arn", "function_memory_size"} & set(line)
    get_settings.cache_clear()
