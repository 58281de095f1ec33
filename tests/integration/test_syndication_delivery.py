"""The syndication HTTP adapter against real HTTPS servers on loopback: signing, idempotency key,
each class of answer, redirects, timeouts, refused connections, certificate checks (the CA
bundle adds to the system's CAs), the refusal of private networks and the cap on answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
import trustme
import urllib3
from urllib3.response import HTTPResponse

from jobkit.errors import ConfigurationError, PermanentError, TransientError
from jobkit.webhooks import WebhookVerificationError, sign, verify
from syndication_worker import delivery
from syndication_worker.delivery import (
    RESPONSE_LIMIT,
    RETRY_AFTER_CAP,
    Delivered,
    PrivateNetworkError,
    Sender,
    retry_after,
)
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
    # the partners here are on loopback: allowed, as in the local stack
    return Sender(write_ca(ca, tmp_path), allow_private_networks=True)


@pytest.fixture
def partner(ca: trustme.CA) -> Iterator[PartnerServer]:
    with PartnerServer("acme", ca, [SECRETS[1]]) as server:
        yield server


def post(sender: Sender, url: str, timeout: float = 5.0, body: bytes = BODY) -> Delivered:
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
    other = Sender(write_ca(trustme.CA(), tmp_path), allow_private_networks=True)
    # When a delivery is posted
    with pytest.raises(TransientError, match="TLS failed"):
        post(other, partner.url)
    # Then nothing reached the partner (transient: a certificate is the partner's to fix, and
    # the job's attempts bound the retries)
    assert partner.requests == []


def test_a_plain_http_url_is_refused(sender: Sender) -> None:
    with pytest.raises(PermanentError, match="not https"):
        post(sender, "http://127.0.0.1:9/listings")


# --- Trust: the CA bundle adds to the system's CAs ---------------------------------------------


@pytest.fixture
def system_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A CA standing for a public one in the system's trust store: OpenSSL's default verify
    paths, which `ssl.create_default_context` loads, read the file `SSL_CERT_FILE` names."""
    public = trustme.CA()
    monkeypatch.setenv("SSL_CERT_FILE", write_ca(public, tmp_path, "system-ca.pem"))
    return public


def test_the_ca_bundle_adds_to_the_systems_cas_and_does_not_replace_them(
    system_ca: trustme.CA, tmp_path: Path
) -> None:
    # Given a partner whose certificate a public CA issued (in the system's store), one whose
    # certificate a private CA issued, and a worker whose CA bundle holds the private CA
    private_ca = trustme.CA()
    sender = Sender(write_ca(private_ca, tmp_path, "private-ca.pem"), allow_private_networks=True)
    with (
        PartnerServer("public", system_ca, [SECRETS[0]]) as public,
        PartnerServer("private", private_ca, [SECRETS[0]]) as private,
    ):
        # When a delivery is posted to each
        to_public = post(sender, public.url)
        to_private = post(sender, private.url)

    # Then both are delivered, and verified there
    assert (to_public.status, to_public.response_id) == (200, "public-1")
    assert (to_private.status, to_private.response_id) == (200, "private-1")
    assert [r.verified for r in public.requests + private.requests] == [True, True]


def test_without_a_bundle_only_the_systems_cas_are_trusted(
    system_ca: trustme.CA, tmp_path: Path
) -> None:
    # Given a worker with no CA bundle, a partner with a public certificate and one with a
    # private CA's certificate
    sender = Sender(None, allow_private_networks=True)
    with (
        PartnerServer("public", system_ca, [SECRETS[0]]) as public,
        PartnerServer("private", trustme.CA(), [SECRETS[0]]) as private,
    ):
        # When a delivery is posted to each
        to_public = post(sender, public.url)
        with pytest.raises(TransientError, match="TLS failed"):
            post(sender, private.url)

    # Then the public one is delivered (the system's store is what trusted it) and the
    # private one fails TLS: nothing reached it
    assert to_public.response_id == "public-1"
    assert private.requests == []


def test_a_certificate_from_neither_the_system_nor_the_bundle_fails_tls(
    system_ca: trustme.CA, tmp_path: Path
) -> None:
    # Given a worker trusting the system's CAs and a private CA, and a partner whose
    # certificate a third CA issued
    sender = Sender(write_ca(trustme.CA(), tmp_path, "private-ca.pem"), allow_private_networks=True)
    # When a delivery is posted
    with (
        PartnerServer("unknown", trustme.CA(), [SECRETS[0]]) as unknown,
        pytest.raises(TransientError, match="TLS failed"),
    ):
        post(sender, unknown.url)
    # Then it fails TLS (transient, as a partner's broken certificate is) and nothing reached it
    assert unknown.requests == []


def test_the_certificate_must_name_the_host(ca: trustme.CA, sender: Sender) -> None:
    # Given a partner whose certificate, from a trusted CA, is for another host
    # When a delivery is posted to it at 127.0.0.1
    with (
        PartnerServer("acme", ca, [SECRETS[0]], names=("partner.example.com",)) as other,
        pytest.raises(TransientError, match="TLS failed"),
    ):
        post(sender, other.url)
    # Then the hostname check refused it
    assert other.requests == []


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_a_ca_bundle_that_cannot_be_loaded_is_a_configuration_error(
    tmp_path: Path, content: bytes | None
) -> None:
    # Given a CA bundle setting naming a missing file, or a file that holds no certificate
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    # When the sender is made, then it says which setting is wrong
    with pytest.raises(ConfigurationError, match="SYNDICATION_CA_BUNDLE"):
        Sender(str(bundle))


# --- Private networks are refused unless allowed -----------------------------------------------


@pytest.fixture
def ipv6_partner(ca: trustme.CA) -> Iterator[PartnerServer]:
    try:
        server = PartnerServer("acme", ca, [SECRETS[1]], host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        yield server


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("[::1]", "::1")],
)
def test_a_partner_on_loopback_is_refused_unless_private_networks_are_allowed(
    ca: trustme.CA, tmp_path: Path, request: pytest.FixtureRequest, host: str, address: str
) -> None:
    # Given a partner listening on loopback (on ::1 for the IPv6 name) and a worker with the
    # default settings
    partner: PartnerServer = request.getfixturevalue(
        "ipv6_partner" if ":" in address else "partner"
    )
    url = partner.url_at(host)
    bundle = write_ca(ca, tmp_path)
    # When a delivery is posted to it
    with pytest.raises(PrivateNetworkError) as caught:
        post(Sender(bundle), url)

    # Then it is refused for good, saying which address, why, and how to allow it locally;
    # nothing reached the partner
    assert isinstance(caught.value, PermanentError)
    text = str(caught.value)
    assert text.startswith(f"acme: refused to connect to {address}")
    assert "loopback" in text and "SYNDICATION_ALLOW_PRIVATE_NETWORKS=true" in text
    assert partner.requests == []
    # And the partner is there: a worker that allows private networks delivers to it
    assert post(Sender(bundle, allow_private_networks=True), url).status == 200
    assert len(partner.requests) == 1


def test_the_address_is_refused_before_the_tls_handshake(partner: PartnerServer) -> None:
    # Given a partner on loopback whose certificate the worker does not trust either
    # When a delivery is posted with the default settings
    # Then the refusal is the private network's (permanent), not a TLS failure (transient)
    with pytest.raises(PrivateNetworkError, match="loopback"):
        post(Sender(), partner.url)


def test_the_check_is_on_the_address_connected_to_and_a_public_one_is_delivered_to(
    sender: Sender,
    partner: PartnerServer,
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a classifier that records what it is asked and takes 127.0.0.1 for a public address
    seen: list[IPv4Address | IPv6Address] = []

    def public(address: IPv4Address | IPv6Address) -> str | None:
        seen.append(address)
        return None

    monkeypatch.setattr(delivery, "non_public_reason", public)
    # When a delivery is posted by name (resolved by DNS) with the default settings
    delivered = post(Sender(write_ca(ca, tmp_path)), partner.url_at("localhost"))
    # Then the check saw the socket's peer, the address the name led to, and let it through
    assert seen == [IPv4Address("127.0.0.1")]
    assert delivered.status == 200 and len(partner.requests) == 1


# --- Answers are read up to a cap --------------------------------------------------------------

MIB = 1024 * 1024


@pytest.fixture
def body_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of what the sender read of answers' bodies (urllib3's read, spied on)."""
    sizes: list[int] = []
    original = HTTPResponse.read

    def spy(self: HTTPResponse, *args: Any, **kwargs: Any) -> bytes:
        data = original(self, *args, **kwargs)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(HTTPResponse, "read", spy)
    return sizes


def assert_read_the_cap_and_dropped_the_connection(partner: PartnerServer, read: int) -> None:
    # What was read is at most the cap (and something was read: the spy sees the reads)
    assert 0 < read <= RESPONSE_LIMIT + 1
    # The connection was closed with the rest unread, so the partner's writing broke off; a
    # connection put back in the pool would have left the partner writing
    assert partner.padded.done.wait(timeout=60), "the partner is still writing its answer"
    assert partner.padded.result == "aborted"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_huge_2xx_answer_is_read_up_to_the_cap_and_delivers(
    sender: Sender, partner: PartnerServer, body_reads: list[int], chunked: bool
) -> None:
    # Given a partner that takes the delivery and answers with 64 MiB, its id first (with a
    # Content-Length, or chunked with none) on a keep-alive connection
    partner.script = [Reply(200, {"id": "acme-big"}, padding=64 * MIB, chunked=chunked)]
    # When a delivery is posted
    delivered = post(sender, partner.url)
    read = sum(body_reads)

    # Then it is delivered, with the id from the answer's start
    assert (delivered.status, delivered.response_id) == (200, "acme-big")
    assert_read_the_cap_and_dropped_the_connection(partner, read)
    assert partner.padded.sent < 64 * MIB
    # And the next delivery, through the same pool, gets its own answer
    assert post(sender, partner.url).response_id == "acme-2"


@pytest.mark.parametrize(
    ("status", "chunked", "error"),
    [(422, False, PermanentError), (503, True, TransientError)],
)
def test_a_huge_error_answer_is_read_up_to_the_cap_with_its_message(
    sender: Sender,
    partner: PartnerServer,
    body_reads: list[int],
    status: int,
    chunked: bool,
    error: type[Exception],
) -> None:
    # Given a partner that refuses with 64 MiB of answer, its message first
    partner.script = [
        Reply(
            status, {"error": "no price"}, {"Retry-After": "7"}, padding=64 * MIB, chunked=chunked
        )
    ]
    # When a delivery is posted
    with pytest.raises(error) as caught:
        post(sender, partner.url)

    # Then the outcome is the status's, with the partner's message
    assert str(caught.value) == f"acme answered {status}: no price"
    assert_read_the_cap_and_dropped_the_connection(partner, sum(body_reads))


def test_a_small_answer_is_read_whole(
    sender: Sender, partner: PartnerServer, body_reads: list[int]
) -> None:
    # Given a partner whose answer is just under the cap, its id at the very end
    padding = RESPONSE_LIMIT - 20
    partner.script = [Reply(200, b" " * padding + b'{"id": "acme-end"}')]
    # When a delivery is posted
    delivered = post(sender, partner.url)
    # Then all of it was read: the id at its end is found
    assert delivered.response_id == "acme-end"
    assert sum(body_reads) == padding + len(b'{"id": "acme-end"}')
