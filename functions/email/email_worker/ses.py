"""SES v2 adapter: the only module of the email worker that talks to AWS.

It turns SES's failures into the two kinds the jobkit runtime acts on: `TransientError`
(throttling, quotas, 5xx, network: back off and try again) and `PermanentError` (the message
or the account is wrong: dead-letter at once, a person has to look). Error text goes through
`redact` because SES puts addresses in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.errors import OutcomeUnknownError, PermanentError, TransientError
from jobkit.redact import redact

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import MessageTagTypeDef

# Codes that retrying will not fix. SendingPaused is here although it may end: sending stays
# paused until a person acts (account review, a configuration set re-enabled), far longer than
# a job's backoff; the DLQ and its alarm tell that person, and a redrive sends afterwards.
PERMANENT_CODES = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "BadRequestException",
        "AccountSuspendedException",
        "NotFoundException",
        "SendingPausedException",
    }
)
# Rate and quota limits clear with time; the others are AWS's side.
TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# SES tag names and values: letters, digits, '_' and '-', at most 256 characters.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
TAG_MAX = 256


def sesv2() -> SESV2Client:
    return aws.client("sesv2")  # type: ignore[no-any-return]


def worst_case_seconds() -> float:
    """The longest a send can take before it gives up (one attempt, its timeouts)."""
    return aws.worst_case_seconds("sesv2")


def tag_value(value: str) -> str:
    """`value` with every character SES refuses in a tag replaced by '_'."""
    return _TAG_UNSAFE.sub("_", value)[:TAG_MAX] or "_"


def send(
    from_address: str,
    to: str,
    subject: str,
    html: str,
    text: str,
    configuration_set: str,
    tags: Mapping[str, str],
) -> str:
    """Send one email (HTML and text alternatives); returns SES's message id."""
    # Lazy (cold start): botocore loads with the first client, not at the handler's import.
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    email_tags: list[MessageTagTypeDef] = [
        {"Name": tag_value(name), "Value": tag_value(value)} for name, value in tags.items()
    ]
    extra: dict[str, Any] = {"ConfigurationSetName": configuration_set} if configuration_set else {}
    try:
        response = sesv2().send_email(
            FromEmailAddress=from_address,
            Destination={"ToAddresses": [to]},
            Content={
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": html, "Charset": "UTF-8"},
                        "Text": {"Data": text, "Charset": "UTF-8"},
                    },
                }
            },
            EmailTags=email_tags,
            **extra,
        )
    except ClientError as exc:
        raise classify(exc) from None
    except BotoConnectionError as exc:
        # No connection was made: SES has not seen the email. Safe to send again.
        raise TransientError(redact(f"SES unreachable: {type(exc).__name__}: {exc}")) from None
    except HTTPClientError as exc:
        # The request went out and no answer came (a read timeout, a dropped connection): SES
        # may or may not have sent it. An at_least_once type sends again (a lost transactional
        # email is worse than a second one); an at_most_once type fails for a person to check.
        raise OutcomeUnknownError(
            redact(f"SES did not answer: {type(exc).__name__}: {exc}")
        ) from None
    return response["MessageId"]


def classify(exc: ClientError) -> PermanentError | TransientError:
    """The jobkit error for an SES `ClientError`: by code first, by HTTP status otherwise."""
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code", ""))
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    message = redact(f"SES {code or 'error'} ({status or '?'}): {error.get('Message', '')}")
    if code in PERMANENT_CODES:
        return PermanentError(message)
    if code in TRANSIENT_CODES or code.startswith("Throttl") or status == 429 or status >= 500:
        return TransientError(message, retry_after=_retry_after(meta.get("HTTPHeaders", {})))
    if 400 <= status < 500:
        return PermanentError(message)
    # Neither a known code nor a status: retry, the job's attempts bound it.
    return TransientError(message)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:  # an HTTP date: the job's own backoff is good enough
        return None
