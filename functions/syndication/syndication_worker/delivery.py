"""The HTTP adapter: one signed POST to a partner and what its answer means (the only module
that does HTTP).

- Certificates are always verified (`CERT_REQUIRED`, hostname checked) against the system's
  CAs, plus the `SYNDICATION_CA_BUNDLE` file's when one is set (a private CA is added to the
  public ones, it does not replace them); there is no switch to turn that off.
- A partner must be on the public internet: the address a connection actually reached (after
  DNS, so a name that re-resolves between a check and the connect cannot get around it) is
  refused when it is loopback, link-local (the cloud metadata service included), private,
  unspecified, multicast, reserved or otherwise not globally routable: `PermanentError`,
  before a byte is sent. `SYNDICATION_ALLOW_PRIVATE_NETWORKS` allows them, for local testing.
- Redirects are not followed and urllib3 does not retry: retries are the job's (backoff,
  `Retry-After`, attempts in the job log).
- At most `RESPONSE_LIMIT` bytes of an answer are read (the id and the message are at its
  start); a connection with more left unread is closed instead of going back to the pool.
- 2xx: delivered; the partner's id for it comes from the JSON body's `id`, else the
  `X-Request-Id` header. 408, 429, 5xx, timeouts, connection and TLS errors: `TransientError`,
  after `Retry-After` if the partner sent one (seconds or an HTTP date, capped at 12 h).
  A failed certificate check is transient too: it is the partner's to fix (an expired or
  replaced certificate), and the attempts bound the retries. 3xx and other 4xx:
  `PermanentError` with the partner's message, cut to 300 characters and redacted.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from jobkit.errors import ConfigurationError, PermanentError, TransientError
from jobkit.redact import redact
from jobkit.webhooks import sign

if TYPE_CHECKING:  # urllib3 2.x's name; the Lambda runtime's urllib3 may be 1.26
    from urllib3.response import BaseHTTPResponse

USER_AGENT = "jobkit-syndication/1"
RETRY_AFTER_CAP = 12 * 3600.0  # SQS hides a message for 12 h at most
MESSAGE_LIMIT = 300
# Bytes of an answer read at most: the id and the error message are at its start, and a
# partner that answers with megabytes (or never stops) must not fill the function's memory.
RESPONSE_LIMIT = 64 * 1024
ALLOW_PRIVATE_SETTING = "SYNDICATION_ALLOW_PRIVATE_NETWORKS"
_TRANSIENT_STATUSES = {408, 429}
# The well-known NAT64 prefix (RFC 6052): an IPv6-only network reaches IPv4 hosts through it,
# so such an address is judged by the IPv4 address it carries.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# The cloud's instance metadata service (EC2's IPv4 and IPv6 addresses): named as such.
_METADATA = {IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")}


class PrivateNetworkError(PermanentError):
    """A partner URL that leads to an address off the public internet (loopback, private,
    link-local, ...): refused, unless private networks are allowed (local testing)."""


def non_public_reason(address: IPv4Address | IPv6Address) -> str | None:
    """Why a partner may not be reached at `address` (None: a public address, allowed).

    Python's `ipaddress` properties follow IANA's special-purpose registries; this only picks
    the words. An IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address is
    judged by its IPv4 address: that is the host the packets reach.
    """
    if isinstance(address, IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        return non_public_reason(embedded)
    if address in _METADATA:
        return "link-local (the cloud metadata service)"
    for special, reason in _SPECIAL_PURPOSE:
        if getattr(address, special):
            return reason
    if not address.is_global:  # shared (100.64.0.0/10), 6to4, Teredo, ...
        return "not globally routable"
    return None


# `ipaddress` properties in the order their words are picked.
_SPECIAL_PURPOSE = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address carries (None: neither)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None


class _PublicOnlyHTTPSConnection(HTTPSConnection):
    """An HTTPS connection that refuses a peer off the public internet.

    The check is on the socket's peer, right after the TCP connect and before the TLS
    handshake: the address really connected to, whatever DNS said before (no rebinding window).
    `_new_conn` is urllib3's one place where the socket is made (1.26 and 2.x); the tests of
    this module go through it, so a urllib3 that moved it fails them. Written here because no
    well-kept library does it for urllib3 (`advocate` wraps requests and is unmaintained since
    2020); the address rules themselves are the standard library's `ipaddress`.
    """

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            peer = str(sock.getpeername()[0])
            reason = non_public_reason(ipaddress.ip_address(peer))
        except BaseException:
            sock.close()
            raise
        if reason is not None:
            sock.close()
            where = peer if peer == self.host else f"{peer} (the address of {self.host})"
            raise PrivateNetworkError(
                f"refused to connect to {where}: a {reason} address, and a partner must be "
                f"on the public internet. For local testing, set {ALLOW_PRIVATE_SETTING}=true "
                "(the local stack does)"
            )
        return sock


class _PublicOnlyHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPSConnection


def trust_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The system's trusted CAs (OpenSSL's default paths), plus `ca_bundle`'s when given;
    `CERT_REQUIRED` and hostname checks, as `ssl.create_default_context` sets them."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except OSError as exc:  # ssl.SSLError included: not a PEM of certificates
            raise ConfigurationError(
                f"SYNDICATION_CA_BUNDLE {ca_bundle!r} cannot be loaded: {exc}"
            ) from exc
    return context


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


def _read_capped(response: BaseHTTPResponse) -> bytes:
    """The answer's first `RESPONSE_LIMIT` bytes. When more is left, the connection is closed:
    back in the pool, its next request would read the rest of this answer."""
    try:
        data = response.read(RESPONSE_LIMIT + 1)  # fewer than asked only at the end
        if len(data) > RESPONSE_LIMIT:
            response.close()  # closes the connection too
            data = data[:RESPONSE_LIMIT]
        return data
    finally:
        response.release_conn()  # a no-op when reading to the end released it already


class Sender:
    """A pool of verified HTTPS connections, kept for the container's life.

    `ca_bundle`: a PEM file of CAs trusted besides the system's. `allow_private_networks`:
    let partners be on loopback or private addresses (the local stack's, tests); off, such a
    partner is refused with `PrivateNetworkError`.
    """

    def __init__(
        self, ca_bundle: str | None = None, *, allow_private_networks: bool = False
    ) -> None:
        self.allow_private_networks = allow_private_networks
        self._pool = urllib3.PoolManager(
            ssl_context=trust_context(ca_bundle),
            cert_reqs="CERT_REQUIRED",
            retries=False,
            maxsize=4,
        )
        if not allow_private_networks:
            self._pool.pool_classes_by_scheme = {
                **self._pool.pool_classes_by_scheme,
                "https": _PublicOnlyHTTPSConnectionPool,
            }

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
                preload_content=False,
            )
            data = _read_capped(response)
        except PrivateNetworkError as exc:
            raise PrivateNetworkError(f"{platform}: {exc}") from None
        except MaxRetryError as exc:  # urllib3 wraps some errors even without retries
            raise _network_error(platform, exc.reason or exc, timeout) from None
        except HTTPError as exc:
            raise _network_error(platform, exc, timeout) from None
        status = response.status
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
