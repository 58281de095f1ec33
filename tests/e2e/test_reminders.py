"""A reminder sequence on the local stack: the reminders function and the email function of
template.yaml, running as they would on AWS, with offsets of seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from jobkit.client import Jobkit
from jobkit_apps.applications import Applications, SequenceState, put_application
from jobkit_apps.reminders import cancel_sequence, get_sequence, start_sequence
from jobkit_tools.local import LocalStack
from jobkit_tools.local.stack import client

from .conftest import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def applications(jobkit_stack: LocalStack, producer: Jobkit) -> Iterator[Applications]:
    yield Applications(jobkit_stack.deployment.outputs["ApplicationsTableName"])


def messages_left(stack: LocalStack) -> int:
    """Messages on the reminders queue: delayed, visible or in flight."""
    names = [
        "ApproximateNumberOf" + n for n in ("Messages", "MessagesNotVisible", "MessagesDelayed")
    ]
    attributes = client("sqs", stack.endpoint_url).get_queue_attributes(
        QueueUrl=stack.deployment.outputs["RemindersQueueUrl"], AttributeNames=names
    )["Attributes"]
    return sum(int(attributes[n]) for n in names)


def emails_to(stack: LocalStack, address: str) -> list[dict[str, Any]]:
    return [m for m in stack.sent_emails() if address in m["destinations"]]


def test_the_reminders_function_runs_on_its_queue(jobkit_stack: LocalStack) -> None:
    # Given the local stack from template.yaml
    deployment = jobkit_stack.deployment
    # Then the reminders function is deployed with its table, fed by its own queue
    (function,) = [f for f in deployment.functions if f.logical_id == "RemindersFunction"]
    assert function.environment["JOBKIT_WORKER_QUEUE"] == "reminders"
    table = deployment.outputs["ApplicationsTableName"]
    assert function.environment["JOBKIT_APPLICATIONS_TABLE"] == table
    (mapping,) = [m for m in deployment.mappings if m.function_name == function.name]
    queue_name = deployment.outputs["RemindersQueueUrl"].rsplit("/", 1)[-1]
    assert mapping.queue_arn.endswith(f":{queue_name}")
    assert mapping.report_batch_item_failures


def test_a_sequence_reminds_at_each_step_then_completes(
    jobkit_stack: LocalStack, producer: Jobkit, applications: Applications
) -> None:
    # Given an applicant with a missing document
    applicant = f"app-{uuid.uuid4().hex[:8]}"
    address = f"{applicant}@example.com"
    put_application(
        applicant, email=address, missing_documents=["passport"], applications=applications
    )
    # When a two-step sequence starts, 1 s and 3 s from now
    sequence = start_sequence(
        applicant,
        offsets=[timedelta(seconds=1), timedelta(seconds=3)],
        send_time=None,
        client=producer,
        applications=applications,
    )

    # Then it completes after its last step, and the applicant got two reminders
    def completed() -> Any:
        current = get_sequence(applicant, applications=applications)
        return current if current and current.state is SequenceState.COMPLETED else None

    ended = wait_until(completed, 60, what="the sequence to complete")
    assert ended.id == sequence.id and ended.reason == "last reminder sent"
    reminders = wait_until(
        lambda: len(emails_to(jobkit_stack, address)) == 2 and emails_to(jobkit_stack, address),
        60,
        what="two reminder emails",
    )
    assert {m["subject"] for m in reminders} == {"Reminder: your passport is still missing"}


def test_a_cancelled_sequence_sends_nothing(
    jobkit_stack: LocalStack, producer: Jobkit, applications: Applications
) -> None:
    # Given a sequence whose first step is due in 3 s
    applicant = f"app-{uuid.uuid4().hex[:8]}"
    address = f"{applicant}@example.com"
    put_application(
        applicant, email=address, missing_documents=["payslip"], applications=applications
    )
    start_sequence(
        applicant,
        offsets=[timedelta(seconds=3)],
        send_time=None,
        client=producer,
        applications=applications,
    )
    # When it is cancelled at once
    cancelled = cancel_sequence(applicant, client=producer, applications=applications)
    assert cancelled is not None and cancelled.job_id is not None
    # Then its step never runs and no email goes out
    job = producer.get_job(cancelled.job_id)
    assert job is not None and job.state.value == "cancelled"
    wait_until(lambda: messages_left(jobkit_stack) == 0, 30, what="the step's message to go")
    assert emails_to(jobkit_stack, address) == []
    job = producer.get_job(cancelled.job_id)
    assert job is not None and job.state.value == "cancelled" and job.attempts == 0
