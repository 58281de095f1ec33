"""API Gateway's IAM authorization of an HTTP API route, locally: the request's AWS Signature
Version 4 is checked against the local stack's credentials.

Hand-written because nothing maintained emulates API Gateway's IAM auth locally (moto stores
an HTTP API but never serves it; `sam local start-api` skips authorization). The signature is
not re-implemented: botocore's `SigV4Auth` recomputes it over the received method, path,
query, signed headers and body, at the request's own X-Amz-Date, and the two are compared. As
API Gateway does, a request signed more than 5 minutes away from now is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
MAX_SKEW = timedelta(minutes=5)
AMZ_DATE = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """The request is not signed by the local credentials: why, as API Gateway would say."""


@dataclass(frozen=True)
class Signed:
    """A received request, as the signature covers it."""

    method: str
    host: str
    raw_path: str  # as received, percent-encoded
    raw_query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def _fields(authorization: str) -> dict[str, str]:
    """`AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` -> its fields."""
    if not authorization.startswith(ALGORITHM + " "):
        raise SignatureError(f"Authorization header requires the {ALGORITHM} algorithm")
    fields = {}
    for part in authorization[len(ALGORITHM) + 1 :].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
    if missing:
        raise SignatureError(f"Authorization header requires the {', '.join(missing)} parameter")
    return fields


def _timestamp(request: Signed, now: datetime) -> str:
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("X-Amz-Date header is missing or not yyyyMMddTHHmmssZ") from None
    if abs(now - signed_at) > MAX_SKEW:
        raise SignatureError(
            f"Signature expired: {amz_date} is more than 5 minutes away from "
            f"{now.strftime(AMZ_DATE)}"
        )
    return amz_date


def _check_scope(credential: str, amz_date: str, credentials: Credentials, region: str) -> None:
    access_key, _, scope = credential.partition("/")
    if access_key != credentials.access_key:
        raise SignatureError("The security token included in the request is invalid")
    expected = f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"
    if scope != expected:
        raise SignatureError(f"Credential should be scoped to {expected}, not {scope!r}")


def _check_token_and_body(request: Signed, credentials: Credentials) -> None:
    token = request.headers.get("x-amz-security-token")
    if token is not None and token != credentials.token:
        raise SignatureError("The security token included in the request is invalid")
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != hashlib.sha256(request.body).hexdigest():
        raise SignatureError("X-Amz-Content-SHA256 does not match the body")


def verify(
    request: Signed, credentials: Credentials, region: str, now: datetime | None = None
) -> str:
    """The access key the request is signed with, or `SignatureError` saying why not."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise SignatureError("Missing Authentication Token (sign the request with SigV4)")
    fields = _fields(authorization)
    amz_date = _timestamp(request, now or datetime.now(UTC))
    _check_scope(fields["Credential"], amz_date, credentials, region)
    _check_token_and_body(request, credentials)
    names = [n.strip() for n in fields["SignedHeaders"].split(";")]
    if "host" not in names:
        raise SignatureError("the Host header must be signed")
    url = f"http://{request.host}{request.raw_path}"
    rebuilt = AWSRequest(
        method=request.method,
        url=f"{url}?{request.raw_query}" if request.raw_query else url,
        data=request.body,
        headers={name: request.headers.get(name, "") for name in names},
    )
    rebuilt.context["timestamp"] = amz_date
    signer = SigV4Auth(credentials, SERVICE, region)
    if signer.signed_headers(signer.headers_to_sign(rebuilt)) != ";".join(sorted(names)):
        raise SignatureError("a signed header is one SigV4 leaves out (user-agent, expect)")
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided"
        )
    return str(credentials.access_key)
