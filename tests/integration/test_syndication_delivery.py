"""The syndication HTTP adapter against real HTTPS servers on loopback: signing, idempotency key,
each class of answer, redirects, timeouts, refused connections and certificate checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import trustme
import urllib3

from jobkit.errors import PermanentError, TransientError
from jobkit.webhooks import WebhookVerificationError, sign, verify
from syndication_worker.delivery import RETRY_AFTER_CAP, Sender, retry_after
from tests.integration.syndication_support import (
    PartnerServer,
    Reply,
    closed_port_url,
    write_ca,
)

SECRETS = ["whsec_bmV3LXNlY3JldC1mb3ItdGVzdHMtMTIzNA==", "whsec_b2xkLXNlY3JldC0xMjM0NTY3OA=="]
JOB_ID = "syndication:L-1:3:acme"
BODY = b'{"listing_id":"L-1","type":"listing.published","version":"3"}'


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def sender(ca: trustme.CA, tmp_path: Path) -> Sender:
    return Sender(write_ca(ca, tmp_path))


@pytest.fixture
def partner(ca: trustme.CA) -> Iterator[PartnerServer]:
    with PartnerServer("acme", ca, [SECRETS[1]]) as server:
        yield server


def post(sender: Sender, url: str, timeout: float = 5.0, body: bytes = BODY) -> object:
    return sender.post(url, body, job_id=JOB_ID, secrets=SECRETS, timeout=timeout, platform="acme")


def test_a_2xx_delivers_signed_with_the_job_id_as_webhook_id_and_idempotency_key(
    sender: Sender, partner: PartnerServer
) -> None:
    # Given a partner that still only knows the old secret (rotation under way)
    # When a delivery is posted twice (a retry of the same job)
    first = post(sender, partner.url)
    second = post(sender, partner.url)

    # Then both requests verified there, carry the job id as webhook id and idempotency key,
    # and the partner's id for it is the result
    assert [r.verified for r in partner.requests] == [True, True]
    for request in partner.requests:
        assert request.headers["webhook-id"] == JOB_ID
        assert request.headers["Idempotency-Key"] == JOB_ID
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("jobkit")
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        assert request.body == BODY
    assert getattr(first, "response_id") == "acme-1"  # noqa: B009
    assert getattr(second, "status") == 200  # noqa: B009


def test_the_response_id_falls_back_to_the_request_id_header(
    sender: Sender, partner: PartnerServer
) -> None:
    # Given a partner that answers 202 with no JSON id but an X-Request-Id
    partner.script = [Reply(202, b"accepted", {"X-Request-Id": "req-77"})]
    # When a delivery is posted
    delivered = post(sender, partner.url)
    # Then the header's id is the result
    assert getattr(delivered, "response_id") == "req-77"  # noqa: B009


def test_a_tampered_body_fails_verification_at_the_partner(
    ca: trustme.CA, tmp_path: Path, partner: PartnerServer
) -> None:
    # Given headers signed for one body
    headers = {"Content-Type": "application/json", **sign(JOB_ID, BODY, SECRETS)}
    tampered = BODY.replace(b'"3"', b'"4"')
    # When another body is sent with them
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=write_ca(ca, tmp_path))
    response = pool.request("POST", partner.url, body=tampered, headers=headers, retries=False)
    # Then the partner's verify rejects it (401), as verify itself does
    assert response.status == 401
    assert partner.requests[-1].verified is False
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(headers, tampered, SECRETS)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (None, None), ("999999", RETRY_AFTER_CAP), ("soon", None)],
)
def test_503_is_transient_and_honours_retry_after_seconds(
    sender: Sender, partner: PartnerServer, header: str | None, expected: float | None
) -> None:
    # Given a partner that is down for maintenance
    headers = {"Retry-After": header} if header else {}
    partner.script = [Reply(503, {"error": "maintenance"}, headers)]
    # When a delivery is posted
    with pytest.raises(TransientError) as caught:
        post(sender, partner.url)
    # Then it is retried later, not before Retry-After (capped at 12 h)
    assert caught.value.retry_after == expected
    assert "503" in str(caught.value) and "maintenance" in str(caught.value)


def test_503_with_an_http_date_retry_after(sender: Sender, partner: PartnerServer) -> None:
    # Given a partner that says to come back at a given time, an hour from now
    when = datetime.now(UTC) + timedelta(hours=1)
    partner.script = [Reply(503, b"", {"Retry-After": format_datetime(when, usegmt=True)})]
    # When a delivery is posted
    with pytest.raises(TransientError) as caught:
        post(sender, partner.url)
    # Then the wait is until then
    assert caught.value.retry_after is not None
    assert 3500 <= caught.value.retry_after <= 3600


def test_retry_after_in_the_past_is_no_wait() -> None:
    past = format_datetime(datetime(2020, 1, 1, tzinfo=UTC), usegmt=True)
    assert retry_after(past) == 0.0


@pytest.mark.parametrize("status", [408, 429, 500, 502])
def test_408_429_and_5xx_are_transient(sender: Sender, partner: PartnerServer, status: int) -> None:
    partner.script = [Reply(status, {"message": "slow down"}, {"Retry-After": "7"})]
    with pytest.raises(TransientError) as caught:
        post(sender, partner.url)
    assert caught.value.retry_after == 7.0


def test_a_422_is_permanent_with_the_partners_message_cut_and_redacted(
    sender: Sender, partner: PartnerServer
) -> None:
    # Given a partner that rejects the listing, naming a person's address and at length
    message = "price must be positive; ask ada@example.com " + "x" * 1000
    partner.script = [Reply(422, {"error": message})]
    # When a delivery is posted
    with pytest.raises(PermanentError) as caught:
        post(sender, partner.url)
    # Then it fails at once with the partner's message, cut and without the address
    text = str(caught.value)
    assert text.startswith("acme answered 422: price must be positive")
    assert "ada@example.com" not in text and "a***@e***.com" in text
    assert len(text) < 350


def test_a_redirect_is_not_followed_and_is_permanent(
    sender: Sender, partner: PartnerServer
) -> None:
    # Given a partner that moved its endpoint (to itself, so a followed redirect would show)
    partner.script = [Reply(301, b"", {"Location": partner.url + "/v2"})]
    # When a delivery is posted
    with pytest.raises(PermanentError, match="301"):
        post(sender, partner.url)
    # Then the redirect was not followed: one request only
    assert len(partner.requests) == 1


def test_no_answer_within_the_partners_timeout_is_transient(
    sender: Sender, partner: PartnerServer
) -> None:
    # Given a partner that answers after 2 s and a timeout of 0.3 s for it
    partner.script = [Reply(200, delay=2.0)]
    # When a delivery is posted
    with pytest.raises(TransientError, match=r"no answer within 0\.3 s"):
        post(sender, partner.url, timeout=0.3)


def test_a_refused_connection_is_transient(sender: Sender) -> None:
    with pytest.raises(TransientError, match="connection failed"):
        post(sender, closed_port_url())


def test_certificates_are_verified_an_untrusted_one_is_transient(
    partner: PartnerServer, tmp_path: Path
) -> None:
    # Given a sender that trusts another CA than the one that issued the partner's certificate
    other = Sender(write_ca(trustme.CA(), tmp_path))
    # When a delivery is posted
    with pytest.raises(TransientError, match="TLS failed"):
        post(other, partner.url)
    # Then nothing reached the partner (transient: a certificate is the partner's to fix, and
    # the job's attempts bound the retries)
    assert partner.requests == []


def test_a_plain_http_url_is_refused(sender: Sender) -> None:
    with pytest.raises(PermanentError, match="not https"):
        post(sender, "http://127.0.0.1:9/listings")
