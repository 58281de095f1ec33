"""Reminder sequences in moto: the reminders function run on messages from its queue, the
applications table and the queues built as template.yaml declares them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from email_worker import processors as email_processors
from email_worker.settings import get_email_settings
from jobkit import JobState
from jobkit.client import Jobkit
from jobkit.settings import get_settings
from jobkit_apps.applications import (
    ApplicationNotFoundError,
    Applications,
    InvalidApplicationError,
    SequenceState,
    get_applications_settings,
    mark_documents_complete,
    put_application,
)
from jobkit_apps.email import SEND_DOCUMENTS_REMINDER
from jobkit_apps.reminders import (
    NoMissingDocumentsError,
    Sequence,
    cancel_sequence,
    email_job_id,
    get_sequence,
    start_sequence,
    step_job_id,
)
from reminders_worker import processors
from reminders_worker.steps import run_step
from tests.conftest import Stack, lambda_context, load_function_app, sqs_event, template

GROUP = "jobkit-test"
ROLE = "arn:aws:iam::123456789012:role/scheduler"
ADDRESS = "ada.lovelace@example.com"
FROM = "no-reply@jobkit.example.com"
REGION = "us-east-1"
REMINDERS_ARN = f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT_ID}:reminders"


app = load_function_app("reminders")


@dataclass
class Reminders:
    """The stack of these tests: the email stack plus the reminders resources."""

    stack: Stack
    client: Jobkit
    applications: Applications
    queue_url: str
    dlq_url: str

    def receive(self, url: str | None = None) -> list[dict[str, Any]]:
        """Visible messages, received without hiding them from a later receive."""
        got = boto3.client("sqs").receive_message(
            QueueUrl=url or self.queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        return list(got.get("Messages", []))

    def deliver(self, messages: list[dict[str, Any]] | None = None) -> list[str]:
        """What the event source mapping does: invoke the function with what the queue holds,
        delete the records it did not report; the ids of those it reported."""
        messages = self.receive() if messages is None else messages
        response = app.lambda_handler(
            sqs_event(messages, REMINDERS_ARN), lambda_context("RemindersFunction")
        )
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        for m in messages:
            if m["MessageId"] not in failed:
                boto3.client("sqs").delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"]
                )
        return failed

    def emails(self) -> list[dict[str, Any]]:
        """Envelopes waiting on the email queue."""
        return [json.loads(m["Body"]) for m in self.stack.receive(self.stack.queue_url)]


def create_reminders_resources() -> tuple[str, str, str]:
    """The applications table and the reminders queues with template.yaml's properties."""
    resources = template()["Resources"]
    table = resources["ApplicationsTable"]["Properties"]
    boto3.client("dynamodb").create_table(
        TableName="applications",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        BillingMode=table["BillingMode"],
    )
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="reminders-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = resources["RemindersQueue"]["Properties"]
    redrive = {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": str(queue["RedrivePolicy"]["maxReceiveCount"]),
    }
    queue_url = sqs.create_queue(
        QueueName="reminders",
        Attributes={
            "VisibilityTimeout": str(queue["VisibilityTimeout"]),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    boto3.client("scheduler").create_schedule_group(Name=GROUP)
    return "applications", queue_url, dlq_url


@pytest.fixture
def reminders(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reminders]:
    """The stack in moto, and the reminders function's environment as template.yaml sets it
    (settings are cached per process, so each test starts them afresh)."""
    table, queue_url, dlq_url = create_reminders_resources()
    settings = stack.settings.model_copy(
        update={
            "queues": {**stack.settings.queues, "reminders": queue_url},
            "dead_letter_queues": {**stack.settings.dead_letter_queues, "reminders": dlq_url},
            "schedule_group": GROUP,
            "scheduler_role_arn": ROLE,
        }
    )
    environment = {
        "JOBKIT_TABLE": settings.table,
        "JOBKIT_QUEUES": json.dumps(settings.queues),
        "JOBKIT_DEAD_LETTER_QUEUES": json.dumps(settings.dead_letter_queues),
        "JOBKIT_SCHEDULE_GROUP": GROUP,
        "JOBKIT_SCHEDULER_ROLE_ARN": ROLE,
        "JOBKIT_WORKER_QUEUE": "reminders",
        "JOBKIT_QUEUE_URL": queue_url,
        "JOBKIT_DEAD_LETTER_QUEUE_URL": dlq_url,
        "JOBKIT_APPLICATIONS_TABLE": table,
        "POWERTOOLS_SERVICE_NAME": "reminders",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_applications_settings.cache_clear()
    monkeypatch.setattr(processors.worker, "_settings", None)
    monkeypatch.setattr(processors.worker, "_log", None)
    yield Reminders(stack, Jobkit(settings), Applications(table), queue_url, dlq_url)
    get_settings.cache_clear()
    get_applications_settings.cache_clear()


def apply(
    applicant_id: str = "app-1",
    missing: tuple[str, ...] = ("passport", "payslip"),
    timezone: str = "Europe/Berlin",
) -> None:
    put_application(
        applicant_id,
        email=ADDRESS,
        name="Ada",
        timezone=timezone,
        missing_documents=missing,
        upload_url="https://apply.example.com/app-1/upload",
    )


def start(r: Reminders, applicant_id: str = "app-1", **kwargs: Any) -> Sequence:
    return start_sequence(applicant_id, client=r.client, **kwargs)


def schedules() -> list[dict[str, Any]]:
    scheduler = boto3.client("scheduler")
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]]
    return [scheduler.get_schedule(Name=n, GroupName=GROUP) for n in names]


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def test_start_schedules_step_one_for_nine_oclock_local_time(reminders: Reminders) -> None:
    # Given an applicant in Berlin with two missing documents
    apply()
    # When a sequence starts with the defaults
    sequence = start(reminders)
    # Then the record holds it active, pending step 1, due tomorrow 9:00 Berlin time
    assert sequence.state is SequenceState.ACTIVE and sequence.step == 1
    assert sequence.job_id == step_job_id("app-1", sequence.id, 1)
    assert sequence.plan.timezone == "Europe/Berlin"
    assert sequence.plan.offsets == (86_400, 3 * 86_400, 5 * 86_400, 7 * 86_400)
    due = sequence.next_due
    assert due is not None and sequence.plan.due(1) == due
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour == 9
    assert get_sequence("app-1") == sequence
    # And step 1 is a scheduled job with that due time, held by a one-time Scheduler schedule
    job = reminders.client.get_job(sequence.job_id)
    assert job is not None and job.state is JobState.SCHEDULED and job.run_at == due
    (schedule,) = schedules()
    assert schedule["Target"]["Arn"].endswith(":reminders")
    assert schedule["Target"]["DeadLetterConfig"]["Arn"].endswith(":reminders-dlq")
    assert json.loads(schedule["Target"]["Input"])["id"] == sequence.job_id
    # And its payload is ids and the plan: no address
    assert set(job.payload) == {"applicant_id", "sequence_id", "step", "plan"}
    assert "@" not in json.dumps(job.payload)
    assert reminders.receive() == []


def test_a_step_with_missing_documents_sends_one_reminder_and_schedules_the_next(
    reminders: Reminders, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a sequence started two days ago: step 1 is overdue, step 2 due tomorrow
    apply()
    sequence = start(reminders, now=days_ago(2))
    step1 = step_job_id("app-1", sequence.id, 1)
    # When the function runs step 1
    assert reminders.deliver() == []
    # Then the step succeeded and says so
    job = reminders.client.get_job(step1)
    assert job is not None and job.state is JobState.SUCCEEDED
    assert job.result["sent"] is True and job.result["step"] == 1
    assert job.result["next_due"] == sequence.plan.due(2).isoformat().replace("+00:00", "Z")
    # And exactly one reminder email is queued for the email worker, with the missing documents
    (email,) = reminders.emails()
    assert email["type"] == SEND_DOCUMENTS_REMINDER.name
    assert email["id"] == email_job_id(step1)
    assert email["payload"]["to"] == ADDRESS
    assert email["payload"]["missing_documents"] == ["passport", "payslip"]
    # And step 2 is scheduled for its due time, and the record points at it
    step2 = step_job_id("app-1", sequence.id, 2)
    scheduled = reminders.client.get_job(step2)
    assert scheduled is not None and scheduled.state is JobState.SCHEDULED
    assert scheduled.run_at == sequence.plan.due(2)
    assert [json.loads(s["Target"]["Input"])["id"] for s in schedules()] == [step2]
    now = get_sequence("app-1")
    assert now is not None and now.state is SequenceState.ACTIVE
    assert (now.step, now.job_id, now.advanced_by) == (2, step2, step1)
    # And no log line names the applicant's address
    assert caplog.records
    assert all(ADDRESS not in str(vars(r)) for r in caplog.records)


def test_the_reminder_email_goes_out_through_the_email_worker(
    reminders: Reminders, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a step that queued its reminder, and the email worker's environment
    apply()
    start(reminders, now=days_ago(2))
    assert reminders.deliver() == []
    boto3.client("sesv2").create_email_identity(EmailIdentity=FROM)
    monkeypatch.setenv("EMAIL_FROM_ADDRESS", FROM)
    get_email_settings.cache_clear()
    email_worker = email_processors.worker
    monkeypatch.setattr(email_worker, "_settings", reminders.stack.worker_settings())
    monkeypatch.setattr(email_worker, "_log", None)
    # When the email worker gets it
    messages = reminders.stack.receive(reminders.stack.queue_url)
    event = sqs_event(messages, REMINDERS_ARN)
    response = email_worker.handle(event, None)
    get_email_settings.cache_clear()
    # Then one email went to the applicant listing what is missing, with the upload link
    assert response["batchItemFailures"] == []
    (message,) = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert message.destinations == {"ToAddresses": [ADDRESS]}
    assert message.subject == "Reminder: 2 documents are still missing"
    assert "payslip" in message.body and "https://apply.example.com/app-1/upload" in message.body


def test_a_step_after_documents_complete_ends_the_sequence_and_sends_nothing(
    reminders: Reminders,
) -> None:
    # Given an overdue step 1, and the documents completed before it runs
    apply()
    sequence = start(reminders, now=days_ago(2))
    mark_documents_complete("app-1")
    # When the function runs the step
    assert reminders.deliver() == []
    # Then the sequence is completed, nothing was sent and no next step was scheduled
    job = reminders.client.get_job(step_job_id("app-1", sequence.id, 1))
    assert job is not None and job.result["completed"] is True and job.result["sent"] is False
    ended = get_sequence("app-1")
    assert ended is not None and ended.state is SequenceState.COMPLETED
    assert ended.reason == "documents complete"
    assert reminders.emails() == []
    assert schedules() == []
    assert reminders.client.get_job(step_job_id("app-1", sequence.id, 2)) is None


def test_cancel_cancels_the_pending_step_and_its_schedule(reminders: Reminders) -> None:
    # Given a sequence whose step 1 waits on a schedule
    apply()
    sequence = start(reminders)
    assert len(schedules()) == 1
    # When it is cancelled
    cancelled = cancel_sequence("app-1", client=reminders.client)
    # Then the record says so, the step job is cancelled and its schedule deleted
    assert cancelled is not None and cancelled.id == sequence.id
    assert cancelled.state is SequenceState.CANCELLED
    assert sequence.job_id is not None
    job = reminders.client.get_job(sequence.job_id)
    assert job is not None and job.state is JobState.CANCELLED
    assert schedules() == []
    # And a step message that still arrives (its schedule had fired) does nothing
    envelope = {
        "v": 1,
        "id": sequence.job_id,
        "type": "reminders.step",
        "payload": {"applicant_id": "app-1", "sequence_id": sequence.id, "step": 1},
        "enqueued_at": datetime.now(UTC).isoformat(),
    }
    envelope["payload"]["plan"] = json.loads(sequence.plan.model_dump_json())
    boto3.client("sqs").send_message(QueueUrl=reminders.queue_url, MessageBody=json.dumps(envelope))
    assert reminders.deliver() == []
    assert reminders.emails() == []
    # And cancelling again finds nothing to cancel
    assert cancel_sequence("app-1", client=reminders.client) is None


def test_a_step_already_running_when_cancelled_does_nothing_further(
    reminders: Reminders,
) -> None:
    # Given an overdue step 1 whose job could not be cancelled (it was running): only the
    # record says cancelled
    apply()
    sequence = start(reminders, now=days_ago(2))
    done, _ = reminders.applications.cancel("app-1", "cancelled")
    assert done
    # When the step runs on
    assert reminders.deliver() == []
    # Then it sees the mark: no email, no next step
    job = reminders.client.get_job(step_job_id("app-1", sequence.id, 1))
    assert job is not None and job.result["skipped"] == "sequence cancelled"
    assert reminders.emails() == []
    assert reminders.client.get_job(step_job_id("app-1", sequence.id, 2)) is None


def test_starting_twice_does_not_double_but_after_cancel_starts_anew(
    reminders: Reminders,
) -> None:
    # Given an application with a sequence started
    apply()
    first = start(reminders)
    # When it is started again while active
    again = start(reminders)
    # Then it is the same sequence: one step job, one schedule
    assert again.id == first.id and again.job_id == first.job_id
    assert len(schedules()) == 1
    # When it is cancelled and started once more
    cancel_sequence("app-1", client=reminders.client)
    fresh = start(reminders)
    # Then a new sequence runs, with its own step 1
    assert fresh.id != first.id and fresh.state is SequenceState.ACTIVE
    assert [json.loads(s["Target"]["Input"])["id"] for s in schedules()] == [fresh.job_id]


def test_a_start_that_crashed_before_its_enqueue_is_healed_by_the_next_start(
    reminders: Reminders,
) -> None:
    # Given a record that says active, whose step job was never enqueued (a crash between)
    apply()
    sequence = start(reminders)
    assert sequence.job_id is not None
    reminders.client.cancel(sequence.job_id)
    boto3.client("dynamodb").delete_item(TableName="jobs", Key={"pk": {"S": sequence.job_id}})
    # When the sequence is started again
    again = start(reminders)
    # Then the pending step exists again, scheduled for its due time
    assert again.id == sequence.id
    job = reminders.client.get_job(sequence.job_id)
    assert job is not None and job.state is JobState.SCHEDULED and job.run_at == sequence.next_due


def test_the_last_step_sends_and_completes_the_sequence(reminders: Reminders) -> None:
    # Given a two-step sequence with exact offsets, started an hour ago (both steps overdue)
    apply(missing=("passport",))
    sequence = start(
        reminders,
        offsets=[timedelta(seconds=1), timedelta(seconds=2)],
        send_time=None,
        now=days_ago(1 / 24),
    )
    # When the function runs step 1, then step 2 (queued at once: it is overdue)
    assert reminders.deliver() == []
    assert reminders.deliver() == []
    # Then two reminders went to the email queue, and the sequence completed after step 2
    assert [e["id"] for e in reminders.emails()] == [
        email_job_id(step_job_id("app-1", sequence.id, n)) for n in (1, 2)
    ]
    last = reminders.client.get_job(step_job_id("app-1", sequence.id, 2))
    assert last is not None and last.result["completed"] is True and last.result["sent"] is True
    ended = get_sequence("app-1")
    assert ended is not None and ended.state is SequenceState.COMPLETED
    assert (ended.step, ended.reason) == (2, "last reminder sent")
    assert reminders.receive() == [] and schedules() == []


def test_a_retried_step_does_not_send_a_second_email(reminders: Reminders) -> None:
    # Given an overdue step 1 whose first attempt cannot schedule step 2 (no schedule group)
    apply()
    sequence = start(reminders, now=days_ago(2))
    boto3.client("scheduler").delete_schedule_group(Name=GROUP)
    (message,) = reminders.receive()
    # When it runs: the email is queued, scheduling fails, the step is retried
    assert reminders.deliver([message]) == [message["MessageId"]]
    step1 = step_job_id("app-1", sequence.id, 1)
    job = reminders.client.get_job(step1)
    assert job is not None and job.state is JobState.RETRYING
    # And it runs again once the group is back
    boto3.client("scheduler").create_schedule_group(Name=GROUP)
    boto3.client("sqs").change_message_visibility(
        QueueUrl=reminders.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    assert reminders.deliver() == []
    # Then there is still one reminder email, step 1 succeeded on attempt 2
    assert len(reminders.emails()) == 1
    job = reminders.client.get_job(step1)
    assert job is not None and job.state is JobState.SUCCEEDED and job.attempts == 2
    # And step 2 is scheduled under a fresh id (the first one's send had failed), which the
    # record names, so that only it can act
    pending = get_sequence("app-1")
    assert pending is not None and pending.job_id is not None
    base = step_job_id("app-1", sequence.id, 2)
    assert pending.job_id.startswith(base + ":")
    assert [json.loads(s["Target"]["Input"])["id"] for s in schedules()] == [pending.job_id]
    spent = reminders.client.get_job(base)
    assert spent is not None and spent.state is JobState.FAILED


def test_a_step_run_again_after_it_handed_over_enqueues_nothing_new(
    reminders: Reminders,
) -> None:
    # Given step 1 done (email queued, step 2 scheduled)
    apply()
    sequence = start(reminders, now=days_ago(2))
    assert reminders.deliver() == []
    step1 = step_job_id("app-1", sequence.id, 1)
    job = reminders.client.get_job(step1)
    assert job is not None
    # When the same step runs again (a worker that crashed before recording its success)
    from jobkit_apps.reminders import StepPayload

    result = run_step(
        StepPayload.model_validate(job.payload), step1, reminders.client, reminders.applications
    )
    # Then it finishes its enqueues again, which exist: one email, one step 2
    assert result.sent is True and result.step == 1
    assert len(reminders.emails()) == 1
    assert len(schedules()) == 1
    # And a step that is not the pending one does nothing
    stale = run_step(
        StepPayload.model_validate(job.payload),
        "someone-else",
        reminders.client,
        reminders.applications,
    )
    assert stale.skipped == "not the pending step"


def test_what_cannot_be_started_or_cancelled_says_why(reminders: Reminders) -> None:
    # Given no application: start and cancel name the applicant, nothing is written
    with pytest.raises(ApplicationNotFoundError, match="app-9"):
        start(reminders, "app-9")
    with pytest.raises(ApplicationNotFoundError, match="app-9"):
        cancel_sequence("app-9", client=reminders.client)
    with pytest.raises(ApplicationNotFoundError, match="app-9"):
        mark_documents_complete("app-9")
    # Given an application with nothing missing: nothing to remind of
    apply("app-2", missing=())
    with pytest.raises(NoMissingDocumentsError):
        start(reminders, "app-2")
    # Given no sequence: cancel finds nothing to cancel
    assert cancel_sequence("app-2", client=reminders.client) is None
    assert reminders.client.list_jobs(job_type="reminders.step") == []
    # And an invalid application is refused naming the fields, not echoing the values
    with pytest.raises(InvalidApplicationError) as caught:
        put_application("app-3", email="not-an-address", timezone="Mars/Base")
    assert "email" in str(caught.value) and "timezone" in str(caught.value)
    assert "not-an-address" not in str(caught.value)


def test_a_new_list_of_missing_documents_keeps_the_running_sequence(
    reminders: Reminders,
) -> None:
    # Given a running sequence
    apply()
    sequence = start(reminders)
    # When the application is put again with one document left
    apply(missing=("payslip",))
    # Then the sequence runs on, and the record has the new list
    application = reminders.applications.get("app-1")
    assert application is not None
    assert application.missing_documents == ["payslip"]
    assert application.sequence == sequence
