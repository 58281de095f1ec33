"""The local stack's partner endpoints over real HTTPS on loopback: each behaviour, signature
verification, TLS trust, registration in moto's SSM and Secrets Manager, and a prompt stop."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import urllib3
from urllib3.exceptions import ProtocolError, ReadTimeoutError, SSLError

from jobkit.webhooks import new_secret, sign
from jobkit_tools.local.partners import (
    LOCAL_PARTNERS,
    REJECT_MESSAGE,
    Behaviour,
    PartnerEndpoints,
    register,
)
from jobkit_tools.local.partners_process import PartnerProcess
from jobkit_tools.local.stack import MotoServer, client

pytestmark = pytest.mark.e2e

BODY = json.dumps({"listing_id": "L-1", "title": "Two rooms by the park"}).encode()


@pytest.fixture
def endpoints(tmp_path: Path) -> Iterator[PartnerEndpoints]:
    with PartnerEndpoints(LOCAL_PARTNERS, directory=tmp_path) as started:
        yield started


@pytest.fixture
def http(endpoints: PartnerEndpoints) -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED", ca_certs=str(endpoints.ca_bundle), retries=False
    )
    yield pool
    pool.clear()


def post(
    http: urllib3.PoolManager,
    endpoints: PartnerEndpoints,
    name: str,
    *,
    webhook_id: str | None = None,
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> urllib3.BaseHTTPResponse:
    """POST `body` to partner `name`, signed with its secret unless `headers` are given."""
    if headers is None:
        headers = sign(webhook_id or f"msg_{uuid.uuid4().hex}", body, [endpoints.secrets[name]])
    return http.request(
        "POST",
        endpoints.url(name),
        body=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
    )


def test_healthy_partner_answers_200_with_an_id_and_the_same_id_for_a_redelivery(
    endpoints: PartnerEndpoints, http: urllib3.PoolManager
) -> None:
    # Given a healthy partner
    # When a signed webhook is delivered, then delivered again, and another one after it
    first = post(http, endpoints, "healthy", webhook_id="msg_a")
    again = post(http, endpoints, "healthy", webhook_id="msg_a")
    other = post(http, endpoints, "healthy", webhook_id="msg_b")

    # Then each is accepted with the partner's id, the redelivery with the same one
    assert [first.status, again.status, other.status] == [200, 200, 200]
    assert first.json() == again.json() == {"id": "healthy-1"}
    assert other.json() == {"id": "healthy-2"}
    # And the partner recorded the requests as sent and verified
    received = endpoints.received("healthy")
    assert [(r.verified, r.status, r.webhook_id) for r in received] == [
        (True, 200, "msg_a"),
        (True, 200, "msg_a"),
        (True, 200, "msg_b"),
    ]
    assert received[0].method == "POST"
    assert received[0].path == "/webhooks"
    assert received[0].body == BODY
    assert received[0].headers["content-type"] == "application/json"


def test_flaky_partner_answers_503_with_retry_after_first_then_200(
    endpoints: PartnerEndpoints, http: urllib3.PoolManager
) -> None:
    # Given a flaky partner
    # When a webhook is delivered, and delivered again with the same webhook-id
    first = post(http, endpoints, "flaky", webhook_id="msg_1")
    retry = post(http, endpoints, "flaky", webhook_id="msg_1")

    # Then the first attempt is told to come back later, the retry is accepted
    assert first.status == 503
    assert first.headers["Retry-After"] == "2"
    assert retry.status == 200
    assert retry.json() == {"id": "flaky-1"}

    # When another webhook comes
    fresh = post(http, endpoints, "flaky", webhook_id="msg_2")

    # Then it too gets a 503 first
    assert fresh.status == 503
    assert [r.status for r in endpoints.received("flaky")] == [503, 200, 503]


def test_rejecting_partner_answers_422_with_its_reason(
    endpoints: PartnerEndpoints, http: urllib3.PoolManager
) -> None:
    # Given a partner that rejects listings
    # When a signed webhook is delivered
    response = post(http, endpoints, "reject")

    # Then it is rejected for good, with the partner's message
    assert response.status == 422
    assert response.json() == {"error": REJECT_MESSAGE}
    (received,) = endpoints.received("reject")
    assert received.verified
    assert received.status == 422


def test_slow_partner_outlasts_a_shorter_client_timeout(
    endpoints: PartnerEndpoints, http: urllib3.PoolManager
) -> None:
    # Given a partner that takes 5 s to answer
    # When a client that waits 0.5 s delivers a webhook
    # Then the client times out
    with pytest.raises(ReadTimeoutError):
        post(http, endpoints, "slow", timeout=0.5)
    (received,) = endpoints.received("slow")
    assert received.verified
    assert received.status is None


@pytest.mark.parametrize("partner", sorted(LOCAL_PARTNERS))
def test_unsigned_and_tampered_requests_get_401_whatever_the_behaviour(
    endpoints: PartnerEndpoints, http: urllib3.PoolManager, partner: str
) -> None:
    # Given any partner, and a request signed for another body, one with another secret,
    # one signed too long ago, and one not signed at all
    signed = sign("msg_t", BODY, [endpoints.secrets[partner]])
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    attempts = {
        "tampered": (BODY.replace(b"park", b"lake"), signed),
        "wrong secret": (BODY, sign("msg_w", BODY, [new_secret()])),
        "expired": (BODY, sign("msg_e", BODY, [endpoints.secrets[partner]], long_ago)),
        "unsigned": (BODY, {}),
    }

    # When each is delivered
    responses = {
        what: post(http, endpoints, partner, body=body, headers=headers)
        for what, (body, headers) in attempts.items()
    }

    # Then each gets 401 with the reason, and is recorded as unverified
    assert {what: r.status for what, r in responses.items()} == dict.fromkeys(attempts, 401)
    assert "no signature matches" in responses["tampered"].json()["error"]
    assert "no signature matches" in responses["wrong secret"].json()["error"]
    assert "too old" in responses["expired"].json()["error"]
    assert "missing" in responses["unsigned"].json()["error"]
    received = endpoints.received(partner)
    assert [(r.verified, r.status) for r in received] == [(False, 401)] * len(attempts)
    assert all(r.reason for r in received)


def test_a_client_that_does_not_trust_the_ca_fails_tls_verification(
    endpoints: PartnerEndpoints,
) -> None:
    # Given a client that verifies certificates against the default trust store only
    untrusting = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", retries=False)

    # When it delivers a webhook
    # Then the TLS handshake fails on the partner's certificate, and nothing is received
    with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        post(untrusting, endpoints, "healthy")
    assert endpoints.received("healthy") == []


def test_stop_returns_promptly_with_a_slow_request_in_flight(tmp_path: Path) -> None:
    # Given a partner that would take a minute, with a request in flight
    endpoints = PartnerEndpoints({"slow": Behaviour.SLOW}, slow_seconds=60, directory=tmp_path)
    endpoints.start()
    pool = urllib3.PoolManager(ca_certs=str(endpoints.ca_bundle), retries=False)
    outcome: list[object] = []

    def deliver() -> None:
        try:
            outcome.append(post(pool, endpoints, "slow", timeout=60).status)
        except (ProtocolError, OSError) as error:
            outcome.append(error)

    client_thread = threading.Thread(target=deliver, daemon=True)
    client_thread.start()
    while not endpoints.received("slow"):
        client_thread.join(0.05)

    # When the endpoints are stopped
    stopper = threading.Thread(target=endpoints.stop, daemon=True)
    stopper.start()
    stopper.join(10)

    # Then stop returns long before the slow answer was due, and the request goes unanswered
    assert not stopper.is_alive(), "stop() did not return"
    client_thread.join(10)
    assert len(outcome) == 1
    assert not isinstance(outcome[0], int), outcome
    assert endpoints.received("slow")[0].status is None


def test_register_puts_partners_into_ssm_and_secrets_manager(
    endpoints: PartnerEndpoints, tmp_path: Path
) -> None:
    # Given moto's server and the started partners
    moto = MotoServer(tmp_path / "moto.log")
    endpoint_url = moto.start()
    try:
        # When the partners are registered, twice (registering again overwrites)
        register(
            endpoints,
            endpoint_url,
            parameter_prefix="/jobkit/syndication/partners",
            secret_prefix="jobkit/syndication/partners/",
        )
        entries = register(
            endpoints,
            endpoint_url,
            parameter_prefix="/jobkit/syndication/partners/",
            secret_prefix="jobkit/syndication/partners",
            rate_per_second=2.5,
            burst=4,
            timeout_seconds=1,
        )

        # Then each partner has a parameter with its registry entry
        ssm = client("ssm", endpoint_url)
        secretsmanager = client("secretsmanager", endpoint_url)
        page = ssm.get_parameters_by_path(Path="/jobkit/syndication/partners")
        parameters = {p["Name"].rsplit("/", 1)[1]: p for p in page["Parameters"]}
        assert sorted(parameters) == sorted(LOCAL_PARTNERS)
        for name, parameter in parameters.items():
            assert parameter["Type"] == "String"
            entry = json.loads(parameter["Value"])
            assert entry == entries[name]
            assert entry == {
                "url": endpoints.url(name),
                "secret_arn": entry["secret_arn"],
                "rate_per_second": 2.5,
                "burst": 4,
                "timeout_seconds": 1,
                "enabled": True,
            }
            # And the secret it names holds the partner's signing secret
            secret = secretsmanager.get_secret_value(SecretId=entry["secret_arn"])
            assert secret["Name"] == f"jobkit/syndication/partners/{name}"
            assert json.loads(secret["SecretString"]) == {"secrets": [endpoints.secrets[name]]}
    finally:
        moto.stop()


def test_partners_in_a_process_of_their_own_answer_as_named_and_count_what_they_saw() -> None:
    # Given an `accept` partner and a healthy one with a given secret, in a process of their own
    secret = new_secret()
    partners = {"load": Behaviour.ACCEPT, "healthy": Behaviour.HEALTHY}
    with PartnerProcess(partners, secrets={"healthy": secret}) as process:
        pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=str(process.ca_bundle), retries=False
        )
        # When each gets an unsigned POST, then a signed one
        statuses = {
            name: [
                pool.request("POST", process.url(name), body=BODY, headers=headers).status
                for headers in ({}, sign("msg_a", BODY, [process.secrets[name]]))
            ]
            for name in partners
        }
        stats = process.stats()
        pool.clear()

    # Then `accept` answers both without checking, the healthy partner refuses the unsigned one
    assert statuses == {"load": [200, 200], "healthy": [401, 200]}
    assert process.names == ["load", "healthy"]
    # And each counted its requests and its one (kept-alive) TLS connection
    assert stats == {
        "load": {"posts": 2, "verified": 0, "rejected": 0, "connections": 1},
        "healthy": {"posts": 2, "verified": 1, "rejected": 1, "connections": 1},
    }
