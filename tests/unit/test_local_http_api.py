"""The local stack's HTTP API pieces, without a network: the SigV4 check (what botocore signs
passes; anything changed after signing, a stale date, another key or scope does not), the
template's routes as API Gateway matches them, and the payload 2.0 event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jobkit_tools.local.http_api_auth import SignatureError, Signed, verify
from jobkit_tools.local.http_api_event import (
    Request,
    Route,
    answer_of,
    http_api_routes,
    payload_event,
)
from tests.conftest import ROOT

LOCAL = Credentials("testing", "testing", "testing")
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
HOST = "127.0.0.1:8123"


def signed(
    method: str = "POST",
    path: str = "/types/email.send_invite/jobs",
    query: str = "",
    body: bytes = b'{"payload": {}}',
    credentials: Credentials = LOCAL,
    region: str = "us-east-1",
    at: datetime = NOW,
) -> Signed:
    """A request as a client signs it with botocore, as the server receives it."""
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "x/y"})
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(credentials, "execute-api", region).add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    return Signed(method, HOST, path, query, {**headers, "host": HOST}, body)


def test_a_request_signed_with_the_local_credentials_passes() -> None:
    request = signed(query="state=failed&limit=20", path="/jobs/order%3A1%2Fx")
    assert verify(request, LOCAL, "us-east-1", NOW) == "testing"
    # (4 minutes later it still does: within the 5 minutes AWS allows)
    assert verify(request, LOCAL, "us-east-1", NOW + timedelta(minutes=4))


@pytest.mark.parametrize(
    ("why", "change", "message"),
    [
        ("another body", {"body": b'{"payload": {"x": 1}}'}, "does not match"),
        ("another path", {"raw_path": "/jobs/x/retry"}, "does not match"),
        ("another query", {"raw_query": "limit=1000"}, "does not match"),
        ("another method", {"method": "DELETE"}, "does not match"),
        ("no signature", {"headers": {"host": HOST}}, "Missing Authentication Token"),
    ],
)
def test_a_request_changed_after_signing_is_refused(
    why: str, change: dict[str, object], message: str
) -> None:
    request = signed()
    changed = Signed(**{**request.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match=message):
        verify(changed, LOCAL, "us-east-1", NOW)


@pytest.mark.parametrize(
    ("why", "request_", "message"),
    [
        ("a wrong secret", signed(credentials=Credentials("testing", "x", "testing")), "not match"),
        ("another key", signed(credentials=Credentials("AKIDOTHER", "testing")), "token"),
        ("another token", signed(credentials=Credentials("testing", "testing", "t2")), "token"),
        ("another region", signed(region="eu-west-1"), "scoped"),
        ("6 minutes old", signed(at=NOW - timedelta(minutes=6)), "Signature expired"),
        ("6 minutes ahead", signed(at=NOW + timedelta(minutes=6)), "Signature expired"),
    ],
)
def test_a_request_not_signed_by_the_local_credentials_now_is_refused(
    why: str, request_: Signed, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(request_, LOCAL, "us-east-1", NOW)


def test_the_templates_routes_match_as_api_gateway_matches_them() -> None:
    # Given the template's HTTP API routes
    routes = http_api_routes(ROOT / "template.yaml")
    assert routes and all(r.iam and r.function == "ApiFunction" for r in routes)

    def chosen(method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for route in routes:
            found = route.match(method, path)
            if found is not None:
                return route.key, found
        return None

    # Then a request goes to its route, with its path parameters
    assert chosen("POST", "/jobs/j1/cancel") == ("POST /jobs/{id}/cancel", {"id": "j1"})
    assert chosen("POST", "/types/email.send_invite/jobs") == (
        "POST /types/{type}/jobs",
        {"type": "email.send_invite"},
    )
    redrive = "/queues/email/dead-letters/redrive"
    assert chosen("POST", redrive) == (
        "POST /queues/{queue}/dead-letters/redrive",
        {"queue": "email"},
    )
    assert chosen("GET", "/health") == ("GET /health", {})
    # And one the template has no route for goes nowhere
    assert chosen("PUT", "/jobs/j1") is None
    assert chosen("GET", "/jobs/j1/cancel") is None


def test_a_greedy_route_takes_what_the_specific_ones_do_not() -> None:
    greedy = Route("Api", "ANY", "/{proxy+}", "F", iam=False)
    assert greedy.match("DELETE", "/a/b/c") == {"proxy": "a/b/c"}
    assert Route("Api", "GET", "/a/{x}", "F", iam=False).match("GET", "/a/b/c") is None


def test_the_event_is_api_gateways_payload_2_0() -> None:
    # Given a request with repeated query parameters, cookies and a JSON body
    request = Request(
        "POST",
        "/jobs/j%201/cancel",
        "a=1&a=2&b=",
        [("Content-Type", "application/json"), ("Cookie", "s=1; t=2"), ("X-Many", "1")],
        b'{"x": 1}',
        "127.0.0.1",
        HOST,
    )
    route = Route("JobsApi", "POST", "/jobs/{id}/cancel", "ApiFunction", iam=True)
    # When it becomes an event
    event = payload_event(request, route, {"id": "j%201"}, "testing")
    # Then it has the format's fields, as API Gateway fills them
    assert event["version"] == "2.0" and event["routeKey"] == "POST /jobs/{id}/cancel"
    assert (event["rawPath"], event["rawQueryString"]) == ("/jobs/j%201/cancel", "a=1&a=2&b=")
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["cookies"] == ["s=1", "t=2"] and "cookie" not in event["headers"]
    assert event["headers"]["content-type"] == "application/json"
    assert (event["body"], event["isBase64Encoded"]) == ('{"x": 1}', False)
    context = event["requestContext"]
    assert context["http"]["method"] == "POST" and context["stage"] == "$default"
    assert context["authorizer"]["iam"]["accessKey"] == "testing"
    # And a binary body travels base64-encoded
    binary = Request("POST", "/x", "", [], b"\xff\x00", "127.0.0.1", HOST)
    assert payload_event(binary, route, {}, None)["isBase64Encoded"] is True


def test_an_answer_is_what_the_function_returned_or_its_json() -> None:
    result = {"statusCode": 201, "headers": {"Content-Type": "application/json"}, "body": "{}"}
    answer = answer_of({**result, "cookies": ["a=1"]})
    assert (answer.status, answer.body) == (201, b"{}")
    assert ("Set-Cookie", "a=1") in answer.headers
    assert answer_of({"plain": True}).status == 200
    assert answer_of({"plain": True}).body == b'{"plain": true}'
