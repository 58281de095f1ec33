"""The HTTP adapter: one signed POST to a partner and what its answer means (the only module
that does HTTP).

- Certificates are always verified (`CERT_REQUIRED`), against the system's CAs or the
  `SYNDICATION_CA_BUNDLE` file; there is no switch to turn that off.
- Redirects are not followed and urllib3 does not retry: retries are the job's (backoff,
  `Retry-After`, attempts in the job log).
- 2xx: delivered; the partner's id for it comes from the JSON body's `id`, else the
  `X-Request-Id` header. 408, 429, 5xx, timeouts, connection and TLS errors: `TransientError`,
  after `Retry-After` if the partner sent one (seconds or an HTTP date, capped at 12 h).
  A failed certificate check is transient too: it is the partner's to fix (an expired or
  replaced certificate), and the attempts bound the retries. 3xx and other 4xx:
  `PermanentError` with the partner's message, cut to 300 characters and redacted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from jobkit.errors import PermanentError, TransientError
from jobkit.redact import redact
from jobkit.webhooks import sign

USER_AGENT = "jobkit-syndication/1"
RETRY_AFTER_CAP = 12 * 3600.0  # SQS hides a message for 12 h at most
MESSAGE_LIMIT = 300
_TRANSIENT_STATUSES = {408, 429}


@dataclass(frozen=True)
class Delivered:
    status: int
    response_id: str | None


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(int(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _message(data: bytes) -> str:
    """The partner's error text: a JSON `error`/`message`/`detail`, else the body itself."""
    text = data[:4096].decode("utf-8", errors="replace").strip()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("error", "message", "detail", "title"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                text = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                text = value["message"]
                break
    return redact(" ".join(text.split()), limit=MESSAGE_LIMIT)


def _response_id(data: bytes, headers: Mapping[str, str]) -> str | None:
    try:
        parsed: Any = json.loads(data) if data else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("id") not in (None, ""):
        return str(parsed["id"])[:200]
    for name in ("X-Request-Id", "X-Amzn-RequestId", "Request-Id"):
        if headers.get(name):
            return str(headers[name])[:200]
    return None


class Sender:
    """A pool of verified HTTPS connections, kept for the container's life."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        self._pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle or None,
            retries=False,
            maxsize=4,
        )

    def post(
        self,
        url: str,
        body: bytes,
        *,
        job_id: str,
        secrets: Sequence[str],
        timeout: float,
        platform: str,
    ) -> Delivered:
        """POST `body` signed for `job_id` (the webhook id and the idempotency key, the same on
        every attempt). Returns what a 2xx said; raises Transient/PermanentError otherwise."""
        if not url.startswith("https://"):
            raise PermanentError(f"{platform}: partner URL is not https")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": job_id,
            **sign(job_id, body, secrets),
        }
        try:
            response = self._pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=timeout),
                redirect=False,
                retries=False,
                preload_content=True,
            )
        except MaxRetryError as exc:  # urllib3 wraps some errors even without retries
            raise _network_error(platform, exc.reason or exc, timeout) from None
        except HTTPError as exc:
            raise _network_error(platform, exc, timeout) from None
        status = response.status
        data = response.data or b""
        response_headers = {k: v for k, v in response.headers.items()}
        lowered = {k.lower(): v for k, v in response_headers.items()}
        if 200 <= status < 300:
            return Delivered(status, _response_id(data, response_headers))
        if status in _TRANSIENT_STATUSES or status >= 500:
            raise TransientError(
                f"{platform} answered {status}: {_message(data)}".rstrip(": "),
                retry_after=retry_after(lowered.get("retry-after")),
            )
        if 300 <= status < 400:
            where = redact(lowered.get("location", "?"), limit=200)
            raise PermanentError(
                f"{platform} answered {status} (redirect to {where}, not followed)"
            )
        raise PermanentError(f"{platform} answered {status}: {_message(data)}".rstrip(": "))


def _network_error(platform: str, exc: BaseException, timeout: float) -> TransientError:
    if isinstance(exc, Urllib3TimeoutError) and not isinstance(exc, NewConnectionError):
        # (NewConnectionError is a ConnectTimeoutError in urllib3 for history's sake)
        return TransientError(f"{platform}: no answer within {timeout:g} s")
    if isinstance(exc, SSLError):
        return TransientError(redact(f"{platform}: TLS failed: {exc}", limit=500))
    return TransientError(redact(f"{platform}: connection failed: {exc}", limit=500))
