"""Standard Webhooks signing and verification (https://www.standardwebhooks.com).

A request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`:
space-separated `v1,<base64 HMAC-SHA256 over "id.timestamp.body">`, one per secret that is
valid, so a secret can be rotated with the old and the new one valid at once.

The HMAC and the header format come from the scheme's reference library (`standardwebhooks`);
it signs with one secret and checks timestamps with a fixed five-minute window, so the
several-secret signing, the verification against any of several secrets, and the adjustable
tolerance are the few lines here.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from jobkit.errors import JobkitError

DEFAULT_TOLERANCE = timedelta(minutes=5)


class WebhookVerificationError(JobkitError):
    """A request whose signature, id or timestamp does not check out (reject it: 401)."""


def _signature(secret: str, msg_id: str, timestamp: datetime, body: str) -> bytes:
    versioned = Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)
    return base64.b64decode(versioned.split(",", 1)[1])


def sign(
    msg_id: str, body: bytes | str, secrets: Sequence[str], timestamp: datetime | None = None
) -> dict[str, str]:
    """The three headers of a signed request: one `v1` signature per secret."""
    if not secrets:
        raise ValueError("sign needs at least one secret")
    moment = (timestamp or datetime.now(UTC)).astimezone(UTC)
    text = body if isinstance(body, str) else body.decode()
    signatures = " ".join(
        "v1," + base64.b64encode(_signature(s, msg_id, moment, text)).decode() for s in secrets
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signatures,
    }


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secrets: Sequence[str],
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> str:
    """Check a received request; returns its `webhook-id` (use it to drop redeliveries).

    Passes when any `v1` signature matches any of `secrets` (the `whsec_...` strings) and the
    timestamp is within `tolerance` of now (either way), against replays. Raises
    WebhookVerificationError saying which check failed (a body that is not UTF-8 included).
    Verify the raw body, before parsing.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    signature_header = lower.get("webhook-signature", "")
    if not (msg_id and stamp and signature_header):
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    timestamp = _timestamp(stamp, tolerance, now or datetime.now(UTC))
    text = _utf8_text(body, msg_id)
    given = _signatures(signature_header)
    for secret in secrets:
        expected = _signature(secret, msg_id, timestamp, text)
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            return msg_id
    raise WebhookVerificationError("no signature matches a current secret")


def _timestamp(stamp: str, tolerance: timedelta, now: datetime) -> datetime:
    """The `webhook-timestamp` header's moment, if it is within `tolerance` of `now`."""
    try:
        timestamp = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookVerificationError(
            f"webhook-timestamp {stamp[:20]!r} is not Unix seconds"
        ) from None
    skew = now - timestamp
    if abs(skew) > tolerance:
        which = "old" if skew > timedelta(0) else "far in the future"
        raise WebhookVerificationError(
            f"webhook-timestamp is too {which} ({abs(skew).total_seconds():.0f} s, "
            f"tolerance {tolerance.total_seconds():.0f} s)"
        )
    return timestamp


def _utf8_text(body: bytes | str, msg_id: str) -> str:
    """The body as text. The scheme signs UTF-8 text: a body or id that is not cannot have
    been signed (and would raise a UnicodeError, not this module's error, from the decoding
    or the HMAC)."""
    try:
        text = body if isinstance(body, str) else body.decode()
        text.encode()  # a str with lone surrogates has no UTF-8 form either
    except UnicodeError:
        raise WebhookVerificationError("body is not UTF-8") from None
    try:
        msg_id.encode()
    except UnicodeError:
        raise WebhookVerificationError("webhook-id is not UTF-8") from None
    return text


def _signatures(header: str) -> list[bytes]:
    """The `v1` signatures of a `webhook-signature` header (others, and bad base64, ignored)."""
    given: list[bytes] = []
    for part in header.split(" "):
        version, _, value = part.partition(",")
        if version == "v1" and value:
            try:
                given.append(base64.b64decode(value, validate=True))
            except ValueError:
                continue
    return given


def new_secret() -> str:
    """A fresh `whsec_` secret (24 random bytes), for a partner's registration."""
    import secrets as random

    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()
