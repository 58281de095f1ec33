"""SES failures map to the two kinds the runtime acts on: retry later, or dead-letter now."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from email_worker import ses
from email_worker.ses import classify, tag_value
from jobkit import aws
from jobkit.errors import OutcomeUnknownError, PermanentError, TransientError


def client_error(
    code: str, status: int, message: str = "", headers: dict[str, str] | None = None
) -> ClientError:
    """The exception botocore raises for an SES error response (built, not faked)."""
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "SendEmail")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("TooManyRequestsException", 429),
        ("LimitExceededException", 400),
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNew", 502),
        ("SomethingNew", 429),
        ("SomethingNew", 0),
    ],
)
def test_throttling_quotas_and_server_errors_are_transient(code: str, status: int) -> None:
    # Given an SES error that time can fix, When it is classified, Then the job is retried
    assert isinstance(classify(client_error(code, status)), TransientError)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("MessageRejected", 400),
        ("MailFromDomainNotVerifiedException", 400),
        ("BadRequestException", 400),
        ("AccountSuspendedException", 400),
        ("SendingPausedException", 400),
        ("NotFoundException", 404),
        ("AccessDeniedException", 403),
        ("SomethingNew", 400),
    ],
)
def test_rejections_and_other_client_errors_are_permanent(code: str, status: int) -> None:
    # Given an SES error that retrying cannot fix, When it is classified, Then it dead-letters
    error = classify(client_error(code, status))
    assert isinstance(error, PermanentError)
    assert code in str(error)


def test_addresses_in_ses_messages_are_masked() -> None:
    # Given an SES rejection naming the sender and the recipient
    message = "Email address is not verified: no-reply@example.com, ada@lovelace.org"
    exc = client_error("MessageRejected", 400, message)
    # When it is classified
    text = str(classify(exc))
    # Then neither address is in the error text in clear, but one can still tell them apart
    assert "no-reply@example.com" not in text
    assert "ada@lovelace.org" not in text
    assert "n***@e***.com" in text and "a***@l***.org" in text


def test_transient_errors_are_masked_too_and_keep_retry_after() -> None:
    # Given a throttle naming an address and telling when to come back
    exc = client_error(
        "TooManyRequestsException", 429, "Slow down for ada@example.com", {"retry-after": "7"}
    )
    # When it is classified
    error = classify(exc)
    # Then it is transient, masked, and the runtime waits at least that long
    assert isinstance(error, TransientError)
    assert "ada@example.com" not in str(error)
    assert error.retry_after == 7.0


def test_a_retry_after_date_is_ignored() -> None:
    # Given a Retry-After given as an HTTP date, When classified, Then the job's backoff decides
    exc = client_error("Throttling", 400, "", {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"})
    error = classify(exc)
    assert isinstance(error, TransientError)
    assert error.retry_after is None


class _FailingClient:
    """An SES client whose every call fails the way the network does (no boto3 behaviour)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def send_email(self, **_: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_no_connection_is_transient(exc: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given SES cannot be reached at all (nothing was sent)
    monkeypatch.setattr(ses, "sesv2", lambda: _FailingClient(exc))
    # When an email is sent, Then the job is retried, whatever its guarantee
    with pytest.raises(TransientError, match=type(exc).__name__) as raised:
        ses.send("no-reply@example.com", "ada@example.com", "s", "<p>h</p>", "t", "", {})
    assert not isinstance(raised.value, OutcomeUnknownError)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionClosedError(endpoint_url="https://email.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_no_answer_leaves_the_outcome_unknown(
    exc: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the request went out and no answer came back (SES may have sent the email)
    monkeypatch.setattr(ses, "sesv2", lambda: _FailingClient(exc))
    # When an email is sent, Then the outcome is unknown: retried by an at_least_once type,
    # failed for a person by an at_most_once one
    with pytest.raises(OutcomeUnknownError, match=type(exc).__name__):
        ses.send("no-reply@example.com", "ada@example.com", "s", "<p>h</p>", "t", "", {})


def test_client_errors_from_send_are_classified_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given SES rejects the message with the recipient in the text
    exc = client_error("MessageRejected", 400, "Address blacklisted: ada@example.com")
    monkeypatch.setattr(ses, "sesv2", lambda: _FailingClient(exc))
    # When an email is sent, Then it fails permanently, without the address in clear
    with pytest.raises(PermanentError) as raised:
        ses.send("no-reply@example.com", "ada@example.com", "s", "<p>h</p>", "t", "", {})
    assert "ada@example.com" not in str(raised.value)
    assert raised.value.__suppress_context__  # the raw ClientError is not chained into logs


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("invite-42_ok", "invite-42_ok"),
        ("invite:42/ada@example.com", "invite_42_ada_example_com"),
        ("", "_"),
        ("x" * 600, "x" * 256),
    ],
)
def test_tag_values_keep_only_what_ses_accepts(raw: str, tag: str) -> None:
    # Given a job id with characters SES refuses in a tag, When sanitised, Then they become '_'
    assert tag_value(raw) == tag


def test_an_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the real SES client pointed at a port where nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    aws.reset_clients()
    # When an email is sent, Then botocore's connection error becomes a retry
    with pytest.raises(TransientError, match="EndpointConnectionError"):
        ses.send("no-reply@example.com", "ada@example.com", "s", "<p>h</p>", "t", "", {})
    aws.reset_clients()
