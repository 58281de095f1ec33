"""The Jobs HTTP API over real HTTP on 127.0.0.1, served by the local stack from template.yaml:
requests signed with SigV4 (botocore's signer, as a user's client or `curl --aws-sigv4`
signs them) reach the API function; a wrong, missing or stale signature is a 403 and enqueues
nothing; a job enqueued over HTTP runs to `succeeded` on the email worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jobkit.client import Jobkit
from jobkit_tools.local import LocalStack

from .conftest import wait_until

pytestmark = pytest.mark.e2e

LOCAL = Credentials("testing", "testing")  # the local stack's credentials (README)


def invite(job_id: str) -> dict[str, Any]:
    payload = {
        "to": "ada@example.com",
        "inviter_name": "Grace",
        "org_name": "Engines",
        "accept_url": "https://app.example.com/i/1",
    }
    return {"payload": payload, "job_id": job_id}


def send(
    method: str,
    url: str,
    body: Any = None,
    *,
    credentials: Credentials | None = LOCAL,
    signed_at: datetime | None = None,
    sent_body: bytes | None = None,
) -> tuple[int, Any]:
    """One HTTP request, signed as a client signs it (`sent_body`: what goes on the wire
    instead of the signed body)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    if credentials is not None:
        # (a `signed_at` signs as a client whose clock is that far off would)
        clock = (
            signed_at.replace(tzinfo=None) if signed_at else botocore.auth.get_current_datetime()
        )
        with mock.patch("botocore.auth.get_current_datetime", return_value=clock):
            SigV4Auth(credentials, "execute-api", "us-east-1").add_auth(request)
    wire = urllib.request.Request(
        url, data=sent_body if sent_body is not None else data, method=method
    )
    for name, value in request.headers.items():
        wire.add_header(name, value)
    try:
        with urllib.request.urlopen(wire, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def api_url(jobkit_stack: LocalStack) -> str:
    url = jobkit_stack.deployment.outputs["JobsApiUrl"]
    assert url.startswith("http://127.0.0.1:")
    return url


def test_a_signed_enqueue_runs_to_succeeded(api_url: str, producer: Jobkit) -> None:
    # When a producer enqueues an invitation over HTTP, signed with the stack's credentials
    job_id = f"http-{uuid.uuid4().hex[:8]}"
    status, job = send("POST", f"{api_url}/types/email.send_invite/jobs", invite(job_id))
    # Then the job is created
    assert (status, job["id"], job["state"]) == (201, job_id, "queued")

    # And the email worker runs it to succeeded, as a signed GET shows (address masked)
    def succeeded() -> dict[str, Any] | None:
        status, found = send("GET", f"{api_url}/jobs/{job_id}")
        assert status == 200
        return found if found["state"] == "succeeded" else None

    done = wait_until(succeeded, 90, interval=0.5, what=f"job {job_id} to succeed")
    assert done["attempts"] >= 1 and done["payload"]["to"] == "a***@e***.com"
    assert producer.get_job(job_id).state.value == "succeeded"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("why", "options"),
    [
        ("no signature", {"credentials": None}),
        ("a wrong secret", {"credentials": Credentials("testing", "not-the-secret")}),
        ("an unknown access key", {"credentials": Credentials("AKIDOTHER", "testing")}),
        ("a signature 10 minutes old", {"signed_at": datetime.now(UTC) - timedelta(minutes=10)}),
        ("a body changed after signing", {"sent_body": b'{"payload": {}, "job_id": "evil"}'}),
    ],
)
def test_a_bad_signature_is_403_and_enqueues_nothing(
    api_url: str, producer: Jobkit, why: str, options: dict[str, Any]
) -> None:
    # When an enqueue comes with a bad signature
    job_id = f"forged-{uuid.uuid4().hex[:8]}"
    sent = options.get("sent_body")
    if sent is not None:
        options = {**options, "sent_body": sent.replace(b"evil", job_id.encode())}
    status, body = send(
        "POST", f"{api_url}/types/email.send_invite/jobs", invite(job_id), **options
    )
    # Then API Gateway's 403 answers it, and no job exists
    assert status == 403, body
    assert body["message"]
    assert producer.get_job(job_id) is None


def test_health_answers_for_every_queue(api_url: str) -> None:
    status, health = send("GET", f"{api_url}/health")
    assert status in (200, 503)
    assert health["healthy"] is (status == 200)
    queues = {q["queue"] for q in health["queues"]}
    assert {"email", "nightly", "reminders", "syndication"} <= queues


def test_an_unknown_route_is_api_gateways_404_and_the_state_file_has_the_url(
    api_url: str, jobkit_stack: LocalStack
) -> None:
    assert send("GET", f"{api_url}/nowhere") == (404, {"message": "Not Found"})
    assert jobkit_stack.state_file is not None
    state = json.loads(jobkit_stack.state_file.read_text())
    assert state["outputs"]["JobsApiUrl"] == api_url


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_aws_sigv4_as_the_readme_shows(api_url: str) -> None:
    # When the README's curl command asks for the queues
    command = ["curl", "-sS", "--aws-sigv4", "aws:amz:us-east-1:execute-api"]
    command += ["--user", "testing:testing", f"{api_url}/queues"]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    # Then it gets the overview
    assert {q["queue"] for q in json.loads(answer.stdout)["queues"]} >= {"email"}
