"""template.yaml keeps the rules of DESIGN.md: checked on the template itself, no AWS needed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import jobkit.catalog.email
import jobkit.catalog.nightly  # noqa: F401  (declares the job types the template's queues run)
from jobkit.catalog import reminders, syndication  # noqa: F401  (likewise)
from jobkit.expressions import parse_expression
from jobkit.jobs import registered_job_types
from jobkit.models import Envelope
from tests.conftest import template

RESOURCES: dict[str, Any] = template()["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
QUEUES = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::SQS::Queue"}


def _queue_of(function: dict[str, Any]) -> str:
    (event,) = function["Properties"]["Events"].values()
    return str(event["Properties"]["Queue"]["Fn::GetAtt"][0])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_queue_visibility_is_at_least_six_function_timeouts(name: str) -> None:
    function = FUNCTIONS[name]["Properties"]
    queue = QUEUES[_queue_of(FUNCTIONS[name])]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_event_source_reports_partial_failures_and_caps_concurrency(name: str) -> None:
    (event,) = FUNCTIONS[name]["Properties"]["Events"].values()
    props = event["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "MaximumConcurrency" in props["ScalingConfig"]
    assert "ReservedConcurrentExecutions" not in FUNCTIONS[name]["Properties"]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_redrive_is_a_crash_loop_net_above_every_attempt_count(name: str) -> None:
    # Given a worker queue's redrive policy and the job types that queue runs
    queue = QUEUES[_queue_of(FUNCTIONS[name])]["Properties"]
    worker_queue = FUNCTIONS[name]["Properties"]["Environment"]["Variables"]["JOBKIT_WORKER_QUEUE"]
    max_receive = queue["RedrivePolicy"]["maxReceiveCount"]
    attempts = [t.max_attempts for t in registered_job_types().values() if t.queue == worker_queue]
    # Then a healthy job runs out of attempts (and is dead-lettered by jobkit) first
    assert attempts
    assert max_receive > max(attempts)


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_queues_are_encrypted(name: str) -> None:
    props = QUEUES[name]["Properties"]
    assert props.get("SqsManagedSseEnabled") or props.get("KmsMasterKeyId")


def test_job_log_is_encrypted_recoverable_and_expires_finished_jobs() -> None:
    table = RESOURCES["JobsTable"]["Properties"]
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    # No index is keyed by state alone (one hot partition per state).
    for index in table["GlobalSecondaryIndexes"]:
        hash_key = next(k for k in index["KeySchema"] if k["KeyType"] == "HASH")
        assert hash_key["AttributeName"] in {"type_shard", "state_shard"}
        assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_policies_name_actions_and_resources(name: str) -> None:
    # Least privilege: no wildcard actions, and "*" resources only under a condition.
    for policy in FUNCTIONS[name]["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            assert all("*" not in action for action in statement["Action"])
            if statement["Resource"] == "*":
                assert statement.get("Condition"), statement["Sid"]


def test_every_dead_letter_queue_has_an_alarm() -> None:
    alarms = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in alarms}
    dead_letter_queues = {k for k in QUEUES if "DeadLetter" in k}
    assert dead_letter_queues
    assert dead_letter_queues <= watched


SCHEDULES = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Scheduler::Schedule"}


def _parameter_default(value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return template()["Parameters"][value["Ref"]]["Default"]
    return value


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_declared_schedules_are_valid_and_send_a_job_envelope_per_run(name: str) -> None:
    # Given a recurring schedule declared in the template
    props = SCHEDULES[name]["Properties"]
    expression = _parameter_default(props["ScheduleExpression"])
    timezone = _parameter_default(props["ScheduleExpressionTimezone"])

    # Then its default expression is one AWS accepts
    parse_expression(expression, timezone)
    # And its input, as Scheduler fills it in, is an envelope of a known job type whose id is
    # the run's scheduled time (a double fire runs once), sent to that type's queue
    body, variables = props["Target"]["Input"]["Fn::Sub"], template()["Parameters"]
    body = re.sub(r"\$\{(\w+)\}", lambda m: str(variables[m.group(1)]["Default"]), body)
    body = body.replace("<aws.scheduler.scheduled-time>", "2026-11-24T02:00:00Z")
    envelope = Envelope.model_validate_json(body)
    assert envelope.id.endswith("@2026-11-24T02:00:00Z")
    job_type = registered_job_types()[envelope.type]
    job_type.validate(envelope.payload)
    queue = props["Target"]["Arn"]["Fn::GetAtt"][0]
    consumers = [
        f for f in FUNCTIONS.values() if _queue_of({"Properties": f["Properties"]}) == queue
    ]
    (consumer,) = consumers
    assert (
        consumer["Properties"]["Environment"]["Variables"]["JOBKIT_WORKER_QUEUE"] == job_type.queue
    )
    assert props["Target"]["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].endswith("DeadLetterQueue")
    assert props["GroupName"] == {"Ref": "RecurringScheduleGroup"}


def test_scheduler_may_send_to_every_worker_queue_and_nothing_else() -> None:
    (policy,) = RESOURCES["SchedulerRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["sqs:SendMessage"]
    allowed = {r["Fn::GetAtt"][0] for r in statement["Resource"]}
    assert allowed == set(QUEUES)


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def test_applications_table_is_encrypted_recoverable_and_keyed_by_applicant() -> None:
    table = RESOURCES["ApplicationsTable"]["Properties"]
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "applicant_id", "KeyType": "HASH"}]


def test_only_the_reminders_function_reads_and_updates_the_applications_table() -> None:
    # Given every statement of every function that names the applications table
    grants = [
        (name, statement)
        for name, function in FUNCTIONS.items()
        for statement in _statements(function)
        if {"Fn::GetAtt": ["ApplicationsTable", "Arn"]} in _resources(statement)
    ]
    # Then it is the reminders function's alone, and it may read and update, nothing more
    assert [name for name, _ in grants] == ["RemindersFunction"]
    ((_, statement),) = grants
    assert sorted(statement["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert _resources(statement) == [{"Fn::GetAtt": ["ApplicationsTable", "Arn"]}]
    env = FUNCTIONS["RemindersFunction"]["Properties"]["Environment"]["Variables"]
    assert env["JOBKIT_APPLICATIONS_TABLE"] == {"Ref": "ApplicationsTable"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_schedule_rights_stop_at_the_jobs_group_and_the_scheduler_role(name: str) -> None:
    for statement in _statements(FUNCTIONS[name]):
        actions = statement["Action"]
        if any(a.startswith("scheduler:") for a in actions):
            # Only one-time schedules of delayed jobs, in their group
            assert set(actions) <= {"scheduler:CreateSchedule", "scheduler:DeleteSchedule"}
            for resource in _resources(statement):
                assert ":schedule/${JobsScheduleGroup}/jobkit-*" in resource["Fn::Sub"]
        if "iam:PassRole" in actions:
            # Only the Scheduler role, only to Scheduler
            assert actions == ["iam:PassRole"]
            assert _resources(statement) == [{"Fn::GetAtt": ["SchedulerRole", "Arn"]}]
            condition = statement["Condition"]["StringEquals"]
            assert condition == {"iam:PassedToService": "scheduler.amazonaws.com"}


def test_reminders_may_send_to_the_email_queue_and_its_own_only() -> None:
    sends = [
        r["Fn::GetAtt"][0]
        for s in _statements(FUNCTIONS["RemindersFunction"])
        if "sqs:SendMessage" in s["Action"]
        for r in _resources(s)
    ]
    assert sorted(sends) == ["EmailQueue", "RemindersDeadLetterQueue", "RemindersQueue"]


def test_every_worker_queue_and_its_dead_letter_queue_are_in_the_global_maps() -> None:
    # Given the queue maps every function (and so every producer in a function) gets
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    queues = json.loads(re.sub(r"\$\{(\w+)\}", r"\1", variables["JOBKIT_QUEUES"]["Fn::Sub"]))
    dead = json.loads(
        re.sub(r"\$\{(\w+)\}", r"\1", variables["JOBKIT_DEAD_LETTER_QUEUES"]["Fn::Sub"])
    )
    # Then each worker's queue is there under the worker's queue name, with its DLQ
    for function in FUNCTIONS.values():
        env = function["Properties"]["Environment"]["Variables"]
        worker_queue = env["JOBKIT_WORKER_QUEUE"]
        assert queues[worker_queue] == env["JOBKIT_QUEUE_URL"]["Ref"]
        assert dead[worker_queue] == env["JOBKIT_DEAD_LETTER_QUEUE_URL"]["Ref"]


def test_syndication_reads_only_its_partners_secrets_and_rate_limits() -> None:
    # Given the syndication function's statements outside the job log and its queues
    statements = {s["Sid"]: s for s in _statements(FUNCTIONS["SyndicationFunction"])}
    registry, secrets = statements["ReadPartnerRegistry"], statements["ReadPartnerSecrets"]
    limits = statements["PartnerRateLimits"]
    # Then SSM is read under the partners path only, secrets under jobkit/<env>/partners/ only
    assert sorted(registry["Action"]) == ["ssm:GetParameter", "ssm:GetParametersByPath"]
    for resource in _resources(registry):
        assert resource["Fn::Sub"].endswith(":parameter${SyndicationPartnersPath}") or resource[
            "Fn::Sub"
        ].endswith(":parameter${SyndicationPartnersPath}/*")
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"]
    assert _resources(secrets)[0]["Fn::Sub"].endswith(":secret:jobkit/${Environment}/partners/*")
    # And the token buckets are read and updated, in their own table
    assert sorted(limits["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert _resources(limits) == [{"Fn::GetAtt": ["RateLimitsTable", "Arn"]}]
    table = RESOURCES["RateLimitsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "bucket", "KeyType": "HASH"}]
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    env = FUNCTIONS["SyndicationFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SYNDICATION_RATE_LIMIT_TABLE"] == {"Ref": "RateLimitsTable"}
    assert env["SYNDICATION_PARTNERS_PATH"] == {"Ref": "SyndicationPartnersPath"}
