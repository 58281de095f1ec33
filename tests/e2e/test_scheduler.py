"""The local stack fires EventBridge Scheduler schedules stored in moto, as Scheduler does.

Most tests drive the firer against a bare moto server, one `tick()` at a time, with an
injected clock (window 0: no random lateness). One runs it as the stack's thread, on the
real clock, and one deploys a template whose schedule the stack creates and fires.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobkit_tools.local import LocalStack
from jobkit_tools.local.scheduler import ScheduleFirer
from jobkit_tools.local.stack import MotoServer, client

from .conftest import wait_until

pytestmark = pytest.mark.e2e

GROUP = "jobkit-jobs"
ROLE_ARN = "arn:aws:iam::123456789012:role/scheduler"


@dataclass
class Moto:
    endpoint_url: str
    scheduler: Any
    sqs: Any

    def queue(self) -> tuple[str, str]:
        """A fresh queue: (url, arn)."""
        url = self.sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    def schedule(self, expression: str, target: dict[str, Any], **extra: Any) -> str:
        name = f"s-{uuid.uuid4().hex[:8]}"
        self.scheduler.create_schedule(
            Name=name,
            GroupName=GROUP,
            ScheduleExpression=expression,
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"RoleArn": ROLE_ARN, **target},
            **extra,
        )
        return name

    def update(self, name: str, **changes: Any) -> None:
        """UpdateSchedule with the stored definition and `changes` (it replaces the whole)."""
        current = self.scheduler.get_schedule(Name=name, GroupName=GROUP)
        kept = (
            "ScheduleExpression",
            "ScheduleExpressionTimezone",
            "FlexibleTimeWindow",
            "Target",
            "State",
            "StartDate",
            "EndDate",
        )
        definition = {k: current[k] for k in kept if current.get(k) is not None}
        self.scheduler.update_schedule(Name=name, GroupName=GROUP, **{**definition, **changes})

    def created(self, name: str) -> datetime:
        created: datetime = self.scheduler.get_schedule(Name=name, GroupName=GROUP)["CreationDate"]
        return created.astimezone(UTC)

    def scheduled_times(self, url: str) -> list[str]:
        """The scheduled times the queue got (each schedule's Input is that placeholder)."""
        return sorted(m["Body"] for m in self.receive(url))

    def exists(self, name: str) -> bool:
        names = self.scheduler.list_schedules(GroupName=GROUP)["Schedules"]
        return any(s["Name"] == name for s in names)

    def receive(self, url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        return messages


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = MotoServer()
    endpoint_url = server.start()
    try:
        scheduler = client("scheduler", endpoint_url)
        scheduler.create_schedule_group(Name=GROUP)
        yield Moto(endpoint_url, scheduler, client("sqs", endpoint_url))
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_schedules_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test sees only its own schedules: delete them all afterwards."""
    yield
    if "moto" not in request.fixturenames:
        return
    moto: Moto = request.getfixturevalue("moto")
    for schedule in moto.scheduler.list_schedules()["Schedules"]:
        moto.scheduler.delete_schedule(Name=schedule["Name"], GroupName=schedule["GroupName"])


class Clock:
    """A clock the test moves: `now()` for the firer."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment


def firer(moto: Moto, clock: Clock | None = None) -> ScheduleFirer:
    now: Callable[[], datetime] | None = clock.now if clock else None
    return ScheduleFirer(moto.endpoint_url, window_seconds=0, interval=0.1, now=now)


def at(moment: datetime) -> str:
    return f"at({moment.strftime('%Y-%m-%dT%H:%M:%S')})"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def next_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


SCHEDULED = {"Input": "<aws.scheduler.scheduled-time>"}


def test_an_at_schedule_delivers_its_input_once_and_is_deleted(moto: Moto) -> None:
    # Given an at() schedule 2 s ahead, deleted after completion, with the firer running
    url, arn = moto.queue()
    when = datetime.now(UTC) + timedelta(seconds=2)
    name = moto.schedule(
        at(when), {"Arn": arn, "Input": '{"job": "a"}'}, ActionAfterCompletion="DELETE"
    )
    running = firer(moto).start()
    try:
        # When its time comes
        messages = wait_until(lambda: moto.receive(url), timeout=8, what="the schedule to fire")

        # Then its Input was sent to the queue, not before its time, and the schedule is gone
        assert [m["Body"] for m in messages] == ['{"job": "a"}']
        assert datetime.now(UTC) >= when.replace(microsecond=0)
        wait_until(lambda: not moto.exists(name), timeout=5, what="the schedule to be deleted")
        running.tick()
        assert moto.receive(url) == []
        assert running.fired == 1
    finally:
        running.stop()


def test_an_at_schedule_in_a_timezone_fires_at_that_zones_wall_clock_time(moto: Moto) -> None:
    # Given at(2026-11-23T10:00:00) in Europe/Berlin (09:00 UTC), whose Input asks for its time
    url, arn = moto.queue()
    moto.schedule(
        "at(2026-11-23T10:00:00)",
        {"Arn": arn, "Input": '{"at": "<aws.scheduler.scheduled-time>"}'},
        ScheduleExpressionTimezone="Europe/Berlin",
    )
    clock = Clock(datetime(2026, 11, 23, 8, 59, 59, tzinfo=UTC))
    local = firer(moto, clock)

    # When the firer looks one second before 09:00 UTC, then at 09:00 UTC, then again later
    before = local.tick()
    clock.moment = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
    on_time = local.tick()
    clock.moment = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    later = local.tick()

    # Then it fired once, at 09:00 UTC, with the scheduled time in ISO-8601 UTC in its body
    assert (before, on_time, later) == (0, 1, 0)
    assert [json.loads(m["Body"]) for m in moto.receive(url)] == [{"at": "2026-11-23T09:00:00Z"}]


def test_a_rate_schedule_fires_every_period_from_its_creation(moto: Moto) -> None:
    # Given rate(1 minute), and a clock the test moves
    url, arn = moto.queue()
    name = moto.schedule(
        "rate(1 minute)",
        {
            "Arn": arn,
            "Input": "<aws.scheduler.scheduled-time> <aws.scheduler.schedule-arn>"
            " <aws.scheduler.attempt-number>",
        },
    )
    details = moto.scheduler.get_schedule(Name=name, GroupName=GROUP)
    created: datetime = details["CreationDate"].astimezone(UTC)
    clock = Clock(created + timedelta(seconds=59))
    local = firer(moto, clock)

    # When the clock passes one minute, then two, after the creation
    fired = [local.tick()]
    clock.moment = created + timedelta(seconds=61)
    fired += [local.tick(), local.tick()]
    clock.moment = created + timedelta(seconds=121)
    fired.append(local.tick())

    # Then it fired once a minute, its context attributes substituted
    assert fired == [0, 1, 0, 1]
    bodies = sorted(m["Body"] for m in moto.receive(url))
    minute = (created + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    two = (created + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert bodies == [f"{minute} {details['Arn']} 1", f"{two} {details['Arn']} 1"]


def test_a_disabled_schedule_never_fires(moto: Moto) -> None:
    # Given an at() schedule already due, but DISABLED
    url, arn = moto.queue()
    past = datetime.now(UTC) - timedelta(minutes=1)
    name = moto.schedule(at(past), {"Arn": arn, "Input": "x"}, State="DISABLED")
    local = firer(moto)

    # When the firer looks, twice
    fired = local.tick() + local.tick()

    # Then nothing was sent, and the schedule is still there
    assert fired == 0
    assert moto.receive(url) == []
    assert moto.exists(name)


def test_a_resumed_schedule_fires_only_the_occurrences_after_its_resume(moto: Moto) -> None:
    # Given an hourly cron schedule that fired at its first hour
    url, arn = moto.queue()
    name = moto.schedule("cron(0 * * * ? *)", {"Arn": arn, **SCHEDULED})
    first = next_hour(moto.created(name))
    clock = Clock(first + timedelta(seconds=1))
    local = firer(moto, clock)
    fired = [local.tick()]

    # When it is disabled for three and a half hours (three occurrences pass), then enabled
    moto.update(name, State="DISABLED")
    clock.moment = first + timedelta(hours=1, seconds=1)
    fired.append(local.tick())
    clock.moment = first + timedelta(hours=3, minutes=30)
    fired.append(local.tick())
    moto.update(name, State="ENABLED")
    fired.append(local.tick())  # the firer sees it enabled: nothing missed fires
    clock.moment = first + timedelta(hours=4, seconds=1)
    fired.append(local.tick())

    # Then it fired at its first hour and at the first hour after it was enabled, only
    assert fired == [1, 0, 0, 0, 1]
    assert moto.scheduled_times(url) == [iso(first), iso(first + timedelta(hours=4))]


def test_a_schedule_created_disabled_fires_only_after_it_is_enabled(moto: Moto) -> None:
    # Given an hourly cron schedule created disabled, that the firer sees so for two hours
    url, arn = moto.queue()
    name = moto.schedule("cron(0 * * * ? *)", {"Arn": arn, **SCHEDULED}, State="DISABLED")
    first = next_hour(moto.created(name))
    clock = Clock(first + timedelta(seconds=1))
    local = firer(moto, clock)
    fired = [local.tick()]
    clock.moment = first + timedelta(hours=1, minutes=30)
    fired.append(local.tick())

    # When it is enabled at half past, and the next hour comes
    moto.update(name, State="ENABLED")
    fired.append(local.tick())
    clock.moment = first + timedelta(hours=2, seconds=1)
    fired.append(local.tick())

    # Then only that next hour fired: none of the hours it was disabled for
    assert fired == [0, 0, 0, 1]
    assert moto.scheduled_times(url) == [iso(first + timedelta(hours=2))]


@pytest.mark.parametrize("kind", ["rate", "cron"])
def test_a_schedule_fires_from_its_start_date_to_its_end_date_and_a_later_end_extends_it(
    moto: Moto, kind: str
) -> None:
    # Given an hourly schedule (a rate, which counts from its start, or a cron at the start's
    # minute) from a StartDate a day ahead to an EndDate two hours after it
    url, arn = moto.queue()
    start = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    expression = "rate(1 hour)" if kind == "rate" else f"cron({start.minute} * * * ? *)"
    name = moto.schedule(
        expression,
        {"Arn": arn, **SCHEDULED},
        StartDate=start,
        EndDate=start + timedelta(hours=2),
    )
    clock = Clock(start - timedelta(seconds=1))
    local = firer(moto, clock)

    # When the firer looks just before the start, then just after each hour up to three
    fired = [local.tick()]
    for hours in range(4):
        clock.moment = start + timedelta(hours=hours, seconds=1)
        fired.append(local.tick())

    # Then it fired at the start, an hour and two hours on (the end itself), and not after
    assert fired == [0, 1, 1, 1, 0]
    assert moto.scheduled_times(url) == [iso(start + timedelta(hours=h)) for h in (0, 1, 2)]

    # When its end is moved five hours after the start, half an hour after the third hour
    clock.moment = start + timedelta(hours=3, minutes=30)
    moto.update(name, EndDate=start + timedelta(hours=5))
    fired = [local.tick()]
    clock.moment = start + timedelta(hours=4, seconds=1)
    fired.append(local.tick())

    # Then it fires again from the next hour on (the third one, past the old end, never)
    assert fired == [0, 1]
    assert moto.scheduled_times(url) == [iso(start + timedelta(hours=4))]


def test_a_changed_expression_does_not_fire_what_the_new_one_would_have_missed(
    moto: Moto,
) -> None:
    # Given a rate(1 hour) schedule that the firer saw half an hour after its creation
    url, arn = moto.queue()
    name = moto.schedule("rate(1 hour)", {"Arn": arn, **SCHEDULED})
    created = moto.created(name)
    clock = Clock(created + timedelta(minutes=30))
    local = firer(moto, clock)
    fired = [local.tick()]

    # When it is changed to every quarter of an hour, and the next quarter comes
    moto.update(name, ScheduleExpression="cron(0/15 * * * ? *)")
    fired.append(local.tick())
    quarter = clock.moment.replace(second=0, microsecond=0)
    quarter += timedelta(minutes=15 - quarter.minute % 15)
    clock.moment = quarter + timedelta(seconds=1)
    fired.append(local.tick())

    # Then none of the quarters since its creation fired at once: the next one did
    assert fired == [0, 0, 1]
    assert moto.scheduled_times(url) == [iso(quarter)]


def test_a_failed_send_goes_to_the_targets_dead_letter_queue(moto: Moto) -> None:
    # Given a due schedule whose target queue does not exist, with a dead-letter queue
    dlq_url, dlq_arn = moto.queue()
    missing = "arn:aws:sqs:us-east-1:123456789012:no-such-queue"
    moto.schedule(
        at(datetime.now(UTC) - timedelta(seconds=5)),
        {"Arn": missing, "Input": "lost", "DeadLetterConfig": {"Arn": dlq_arn}},
        ActionAfterCompletion="DELETE",
    )

    # When it fires
    firer(moto).tick()

    # Then its input is in the dead-letter queue, with Scheduler's error attributes
    [message] = moto.receive(dlq_url)
    assert message["Body"] == "lost"
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["TARGET_ARN"] == missing
    assert attributes["ERROR_CODE"]


def test_an_unsupported_expression_is_logged_and_skipped(
    moto: Moto, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a cron schedule that AWS would reject (both day fields given), stored in moto
    _, arn = moto.queue()
    name = moto.schedule("cron(0 9 * * MON *)", {"Arn": arn, "Input": "x"})

    # When the firer looks
    with caplog.at_level(logging.ERROR, logger="jobkit.local"):
        fired = firer(moto).tick()

    # Then it says why and fires nothing
    assert fired == 0
    assert f"schedule {name} skipped" in caplog.text
    assert "must be '?'" in caplog.text


TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Group:
    Type: AWS::Scheduler::ScheduleGroup
    Properties:
      Name: template-group
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: scheduler.amazonaws.com}
            Action: sts:AssumeRole
  Hello:
    Type: AWS::Scheduler::Schedule
    Properties:
      Name: hello
      GroupName: !Ref Group
      ScheduleExpression: at(2020-01-01T00:00:00)
      FlexibleTimeWindow: {Mode: "OFF"}
      Target:
        Arn: !GetAtt Queue.Arn
        RoleArn: !GetAtt Role.Arn
        Input: hello from the template
Outputs:
  QueueUrl:
    Value: !Ref Queue
"""


def test_the_local_stack_fires_the_schedules_of_its_template(tmp_path: Path) -> None:
    # Given a template with a queue and a (past) one-time schedule targeting it
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)

    # When the local stack runs it (window 0: no random lateness)
    with LocalStack(template, log_dir=tmp_path / "logs", schedule_window=0) as stack:
        sqs = client("sqs", stack.endpoint_url)
        url = stack.deployment.outputs["QueueUrl"]

        # Then the schedule's input reaches the queue
        def received() -> list[dict[str, Any]]:
            messages: list[dict[str, Any]] = sqs.receive_message(QueueUrl=url).get("Messages", [])
            return messages

        [message] = wait_until(received, timeout=10, what="the template's schedule to fire")
        assert message["Body"] == "hello from the template"
        assert stack.scheduler is not None and stack.scheduler.fired == 1
