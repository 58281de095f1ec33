"""Standard Webhooks: what jobkit signs, a receiver verifies, and what it must reject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from jobkit.webhooks import WebhookVerificationError, new_secret, sign, verify

BODY = b'{"listing_id":"L-1","title":"2BR near the park"}'
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_signed_request_verifies_and_the_reference_library_agrees() -> None:
    # Given a request signed with one secret
    secret = new_secret()
    headers = sign("msg_1", BODY, [secret], timestamp=NOW)

    # Then jobkit verifies it, returning its id, and so does the scheme's reference library
    assert verify(headers, BODY, [secret], now=NOW) == "msg_1"
    # (the reference library checks against the real clock: a request signed now)
    fresh = sign("msg_2", BODY, [secret])
    assert Webhook(secret).verify(BODY, fresh) == {
        "listing_id": "L-1",
        "title": "2BR near the park",
    }


def test_during_a_rotation_both_secrets_are_valid() -> None:
    # Given a partner rotating from an old to a new secret: requests carry both signatures
    old, new = new_secret(), new_secret()
    headers = sign("msg_1", BODY, [new, old], timestamp=NOW)
    assert len(headers["webhook-signature"].split(" ")) == 2

    # Then a receiver that knows either one accepts it
    assert verify(headers, BODY, [old], now=NOW) == "msg_1"
    assert verify(headers, BODY, [new], now=NOW) == "msg_1"


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (lambda h, b: (h, b.replace(b"2BR", b"3BR")), "no signature matches"),
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "no signature matches"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "not Unix seconds"),
        (lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), "no signature matches"),
        (lambda h, b: ({**h, "webhook-signature": "v2,xyz v1,!!"}, b), "no signature matches"),
    ],
)
def test_a_tampered_request_is_rejected(tamper: object, says: str) -> None:
    secret = new_secret()
    headers, body = tamper(sign("msg_1", BODY, [secret], timestamp=NOW), BODY)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError, match=says):
        verify(headers, body, [secret], now=NOW)


def test_a_request_outside_the_tolerance_window_is_a_replay() -> None:
    # Given a request signed six minutes ago (or six minutes ahead)
    secret = new_secret()
    old = sign("msg_1", BODY, [secret], timestamp=NOW - timedelta(minutes=6))
    ahead = sign("msg_1", BODY, [secret], timestamp=NOW + timedelta(minutes=6))

    # Then it is rejected with the default five minutes, and accepted with ten
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(old, BODY, [secret], now=NOW)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(ahead, BODY, [secret], now=NOW)
    assert verify(old, BODY, [secret], now=NOW, tolerance=timedelta(minutes=10)) == "msg_1"


def test_a_wrong_secret_and_header_case_do_what_they_should() -> None:
    secret = new_secret()
    headers = {k.title(): v for k, v in sign("msg_1", BODY, [secret], timestamp=NOW).items()}
    assert verify(headers, BODY, [secret], now=NOW) == "msg_1"  # header names in any case
    with pytest.raises(WebhookVerificationError):
        verify(headers, BODY, [new_secret()], now=NOW)


@pytest.mark.parametrize(
    ("body", "change", "says"),
    [
        (b'{"title": "caf\xe9"}', {}, "body is not UTF-8"),  # Latin-1, not UTF-8
        (b"\xff\xfe{}", {}, "body is not UTF-8"),
        ("\udcff", {}, "body is not UTF-8"),  # a str with a lone surrogate
        (BODY, {"webhook-id": "msg_\udcff"}, "webhook-id is not UTF-8"),
    ],
)
def test_a_body_or_id_that_is_not_utf8_fails_verification(
    body: bytes | str, change: dict[str, str], says: str
) -> None:
    # Given a request, fresh and carrying signatures, whose body (or id) is not UTF-8 text
    secret = new_secret()
    headers = {**sign("msg_1", BODY, [secret], timestamp=NOW), **change}
    # When it is verified
    # Then it is rejected with the module's error (reject it: 401), not a UnicodeError
    with pytest.raises(WebhookVerificationError, match=says):
        verify(headers, body, [secret], now=NOW)
