"""The email function end to end in moto: SQS event in, SES email out, job log and DLQ right."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from email_worker import processors, ses
from email_worker.settings import get_email_settings
from jobkit import JobState
from jobkit.settings import get_settings
from jobkit_apps.email import SEND_INVITE, SEND_WELCOME
from tests.conftest import EVENTS, Stack, lambda_context, load_function_app, sqs_event

FROM = "no-reply@jobkit.example.com"
REGION = "us-east-1"


app = load_function_app("email")


@pytest.fixture
def email(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack in moto, the function's environment as template.yaml sets it, and the sender
    verified in SES. The settings are cached per process, so each test starts them afresh."""
    monkeypatch.setenv("JOBKIT_TABLE", stack.settings.table)
    monkeypatch.setenv("JOBKIT_QUEUES", json.dumps(stack.settings.queues))
    monkeypatch.setenv("JOBKIT_WORKER_QUEUE", "email")
    monkeypatch.setenv("JOBKIT_QUEUE_URL", stack.queue_url)
    monkeypatch.setenv("JOBKIT_DEAD_LETTER_QUEUE_URL", stack.dlq_url)
    monkeypatch.setenv("EMAIL_FROM_ADDRESS", FROM)
    monkeypatch.setenv("EMAIL_CONFIGURATION_SET", "")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "email")
    get_settings.cache_clear()
    get_email_settings.cache_clear()
    monkeypatch.setattr(processors.worker, "_settings", None)
    monkeypatch.setattr(processors.worker, "_log", None)
    yield stack
    get_settings.cache_clear()
    get_email_settings.cache_clear()


def verify_sender() -> None:
    boto3.client("sesv2").create_email_identity(EmailIdentity=FROM)


def sent() -> list[Any]:
    """Every email moto's SES accepted (SES v2 shares the v1 backend)."""
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def invoke(event: dict[str, Any]) -> list[str]:
    """Call the handler as Lambda would; the message ids it wants to see again."""
    response = app.lambda_handler(event, lambda_context("EmailFunction"))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def invite(to: str = "ada@example.com", inviter: str = "Grace") -> dict[str, Any]:
    return {
        "to": to,
        "name": "Ada",
        "inviter_name": inviter,
        "org_name": "Engines Ltd",
        "accept_url": "https://app.example.com/invites/abc",
    }


def reason_of(message: dict[str, Any]) -> str:
    return str(message["MessageAttributes"]["jobkit-reason"]["StringValue"])


def test_an_invitation_is_sent_once_and_its_message_id_recorded(
    email: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a verified sender and an enqueued invitation
    verify_sender()
    email.client.enqueue(SEND_INVITE, invite(inviter="<b>Grace</b>"), job_id="invite-1")
    # When the function gets the message from the queue
    failures = invoke(sqs_event(email.receive(email.queue_url)))
    # Then exactly one email went from the configured sender to the invitee
    assert failures == []
    [message] = sent()
    assert message.source == FROM
    assert message.destinations == {"ToAddresses": ["ada@example.com"]}
    assert message.subject == "<b>Grace</b> invited you to join Engines Ltd"
    assert "&lt;b&gt;Grace&lt;/b&gt;" in message.body  # moto keeps the HTML part
    # and the job succeeded with SES's message id as its result
    job = email.client.get_job("invite-1")
    assert job is not None
    assert job.state == JobState.SUCCEEDED
    assert job.attempts == 1
    assert job.result == {"ses_message_id": message.id, "template": "invite"}
    # and nothing is left in the queue or the DLQ
    assert email.receive(email.queue_url) == []
    assert email.receive(email.dlq_url) == []
    # and the logs name the recipient only masked
    [sent_log] = [r for r in caplog.records if r.getMessage() == "email sent"]
    assert sent_log.__dict__["to"] == "a***@e***.com"
    assert all("ada@example.com" not in str(vars(r)) for r in caplog.records)


def test_the_same_job_id_enqueued_twice_sends_one_email(email: Stack) -> None:
    # Given the same invitation enqueued twice under one job id
    verify_sender()
    email.client.enqueue(SEND_INVITE, invite(), job_id="invite-dup")
    email.client.enqueue(SEND_INVITE, invite(), job_id="invite-dup")
    # When the function processes whatever the queue holds
    messages = email.receive(email.queue_url)
    failures = invoke(sqs_event(messages))
    # Then there was one message and one email
    assert failures == []
    assert len(messages) == 1
    assert len(sent()) == 1


def test_a_message_delivered_twice_sends_one_email(email: Stack) -> None:
    # Given a welcome job that the function already sent
    verify_sender()
    email.client.enqueue(SEND_WELCOME, {"to": "ada@example.com"}, job_id="welcome-1")
    event = sqs_event(email.receive(email.queue_url))
    assert invoke(event) == []
    first = email.client.get_job("welcome-1")
    # When SQS delivers the same message again (at-least-once)
    failures = invoke(event)
    # Then the second delivery is skipped: still one email, the job and its result unchanged
    assert failures == []
    assert len(sent()) == 1
    again = email.client.get_job("welcome-1")
    assert again is not None and first is not None
    assert again.state == JobState.SUCCEEDED
    assert again.attempts == 1
    assert again.result == first.result


def test_an_unverified_sender_fails_the_job_at_once_into_the_dlq(email: Stack) -> None:
    # Given no verified sender identity: SES rejects the message (MessageRejected)
    email.client.enqueue(SEND_INVITE, invite(), job_id="invite-rejected")
    # When the function processes it
    failures = invoke(sqs_event(email.receive(email.queue_url)))
    # Then it is not retried: no batch item failure, one attempt, the job failed
    assert failures == []
    assert sent() == []
    job = email.client.get_job("invite-rejected")
    assert job is not None
    assert job.state == JobState.FAILED
    assert job.attempts == 1
    assert job.error is not None and "MessageRejected" in job.error
    assert FROM not in job.error  # SES names the address: masked
    # and the message is in the DLQ with the reason, not back in the queue
    [dead] = email.receive(email.dlq_url)
    assert "MessageRejected" in reason_of(dead)
    assert FROM not in reason_of(dead)
    assert dead["MessageAttributes"]["jobkit-job-id"]["StringValue"] == "invite-rejected"
    assert email.receive(email.queue_url) == []


def test_a_record_that_is_not_an_envelope_is_dead_lettered_alone(email: Stack) -> None:
    # Given a batch of two invitations and, between them, a message that is not a job
    verify_sender()
    email.client.enqueue(SEND_INVITE, invite("ada@example.com"), job_id="batch-1")
    boto3.client("sqs").send_message(QueueUrl=email.queue_url, MessageBody="hello")
    email.client.enqueue(SEND_INVITE, invite("alan@example.com"), job_id="batch-2")
    messages = email.receive(email.queue_url)
    assert len(messages) == 3
    # When the function processes the batch
    failures = invoke(sqs_event(messages))
    # Then the stray message is in the DLQ with why, and both invitations went out
    assert failures == []
    [dead] = email.receive(email.dlq_url)
    assert dead["Body"] == "hello"
    assert reason_of(dead).startswith("not a jobkit envelope")
    assert sorted(m.destinations["ToAddresses"][0] for m in sent()) == [
        "ada@example.com",
        "alan@example.com",
    ]
    for job_id in ("batch-1", "batch-2"):
        job = email.client.get_job(job_id)
        assert job is not None and job.state == JobState.SUCCEEDED


def test_sam_local_events_invite_and_batch_are_sent(email: Stack) -> None:
    # Given the sample events of events/ (jobs sent straight to SQS: not in the log yet)
    verify_sender()
    # When the handler gets them as `sam local invoke -e` would pass them
    failures = invoke(load_event("email_invite.json")) + invoke(load_event("email_batch.json"))
    # Then every record succeeded: one email per record, of every email job type
    assert failures == []
    assert len(sent()) == 5
    results = {
        job_id: email.client.get_job(job_id)
        for job_id in (
            "event-invite-1",
            "event-batch-invite",
            "event-batch-reset",
            "event-batch-verify",
            "event-batch-welcome",
        )
    }
    templates = set()
    for job in results.values():
        assert job is not None and job.state == JobState.SUCCEEDED
        templates.add(job.result["template"])
    assert templates == {"invite", "password_reset", "verification", "welcome"}
    assert email.receive(email.dlq_url) == []


def test_sam_local_event_invalid_goes_to_the_dlq(email: Stack) -> None:
    # Given the invalid sample event: a non-envelope and an invitation to a bad address
    verify_sender()
    # When the handler gets it
    failures = invoke(load_event("email_invalid.json"))
    # Then nothing is sent or retried, both records are in the DLQ with their reasons
    assert failures == []
    assert sent() == []
    reasons = sorted(reason_of(m) for m in email.receive(email.dlq_url))
    assert len(reasons) == 2
    assert reasons[0].startswith("invalid payload for email.send_invite: to:")
    assert reasons[1].startswith("not a jobkit envelope")
    job = email.client.get_job("event-invalid-address")
    assert job is not None and job.state == JobState.FAILED


def test_a_throttled_send_is_retried_later(email: Stack) -> None:
    # Given SES answers every send with a throttle (429 TooManyRequestsException), given to
    # boto3 through its own before-call hook so the real client raises its real ClientError
    def throttled(**_: Any) -> Any:
        error = {"Code": "TooManyRequestsException", "Message": "Too many requests"}
        parsed = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 429, "HTTPHeaders": {}}}
        return AWSResponse("https://email", 429, HTTPHeaders(), None), parsed

    ses.sesv2().meta.events.register("before-call.sesv2.SendEmail", throttled)
    email.client.enqueue(SEND_INVITE, invite(), job_id="invite-throttled")
    messages = email.receive(email.queue_url)
    # When the function processes it
    failures = invoke(sqs_event(messages))
    # Then the record is handed back for a retry, the job waits in `retrying`, nothing in the DLQ
    assert failures == [messages[0]["MessageId"]]
    job = email.client.get_job("invite-throttled")
    assert job is not None
    assert job.state == JobState.RETRYING
    assert job.error is not None and "TooManyRequestsException" in job.error
    assert sent() == []
    assert email.receive(email.dlq_url) == []


def test_the_configuration_set_and_job_id_tag_reach_ses(
    email: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a configuration set in the settings and a job id with characters SES refuses in tags
    monkeypatch.setenv("EMAIL_CONFIGURATION_SET", "transactional")
    get_email_settings.cache_clear()
    verify_sender()
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    # botocore's own hook: observes the request parameters, the call itself goes to moto
    ses.sesv2().meta.events.register("before-parameter-build.sesv2.SendEmail", record)
    email.client.enqueue(SEND_WELCOME, {"to": "ada@example.com"}, job_id="welcome:ada/1")
    # When the function sends it
    assert invoke(sqs_event(email.receive(email.queue_url))) == []
    # Then SES got the configuration set and the sanitised job id as a tag
    [call] = calls
    assert call["ConfigurationSetName"] == "transactional"
    assert {"Name": "jobkit-job-id", "Value": "welcome_ada_1"} in call["EmailTags"]
    assert {"Name": "jobkit-template", "Value": "welcome"} in call["EmailTags"]
    assert len(sent()) == 1
