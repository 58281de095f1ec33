"""template.yaml keeps jobkit's rules (least privilege, a net under every queue, alarms):
checked on the template as deployed, its worker blocks inlined, no AWS needed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import jobkit_apps.email
import jobkit_apps.nightly  # noqa: F401  (declares the job types the template's queues run)
from jobkit.expressions import parse_expression
from jobkit.jobs import registered_job_types
from jobkit.models import Envelope
from jobkit.settings import Settings
from jobkit_apps import reminders, syndication  # noqa: F401  (likewise)
from tests.conftest import template

RESOURCES: dict[str, Any] = template()["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
QUEUES = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::SQS::Queue"}
# Worker functions: those an SQS queue triggers.
WORKERS = sorted(
    name
    for name, function in FUNCTIONS.items()
    if any(e["Type"] == "SQS" for e in function["Properties"].get("Events", {}).values())
)
ALARMS = {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
TABLES = sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::DynamoDB::Table")
DEAD_LETTER_QUEUES = sorted(
    {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in QUEUES.values()
        if "RedrivePolicy" in q["Properties"]
    }
)


def _queue_of(function: dict[str, Any]) -> str:
    (event,) = function["Properties"]["Events"].values()
    return str(event["Properties"]["Queue"]["Fn::GetAtt"][0])


def _parameter_default(value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return template()["Parameters"][value["Ref"]]["Default"]
    return value


@pytest.mark.parametrize("name", WORKERS)
def test_queue_visibility_is_at_least_six_function_timeouts(name: str) -> None:
    # Given a function and its queue, with their parameters' defaults where they are parameters
    function = FUNCTIONS[name]["Properties"]
    queue = QUEUES[_queue_of(FUNCTIONS[name])]["Properties"]
    # Then the queue hides a received message for at least 6 function timeouts
    timeout = int(_parameter_default(function["Timeout"]))
    assert int(_parameter_default(queue["VisibilityTimeout"])) >= 6 * timeout


@pytest.mark.parametrize("name", WORKERS)
def test_event_source_reports_partial_failures_and_caps_concurrency(name: str) -> None:
    (event,) = FUNCTIONS[name]["Properties"]["Events"].values()
    props = event["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "MaximumConcurrency" in props["ScalingConfig"]
    assert "ReservedConcurrentExecutions" not in FUNCTIONS[name]["Properties"]


@pytest.mark.parametrize("name", WORKERS)
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
    properties = FUNCTIONS[name]["Properties"]
    policies = properties.get("Policies", [])
    if "Role" in properties:  # a role of its own: its statements are the role's
        role = RESOURCES[properties["Role"]["Fn::GetAtt"][0]]["Properties"]
        policies = [policy["PolicyDocument"] for policy in role["Policies"]]
    assert policies
    for policy in policies:
        for statement in policy["Statement"]:
            assert all("*" not in action for action in statement["Action"])
            if statement["Resource"] == "*":
                assert statement.get("Condition"), statement["Sid"]


def _watched(alarm: dict[str, Any]) -> tuple[str, str, str, str]:
    """(namespace, metric, dimension name, logical id of the resource the dimension names)."""
    (dimension,) = alarm["Dimensions"]
    value = dimension["Value"]
    target = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
    return alarm["Namespace"], alarm["MetricName"], dimension["Name"], target


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_has_error_throttle_queue_age_and_dead_letter_alarms(name: str) -> None:
    # Given a worker function, the queue that triggers it and that queue's dead-letter queue
    queue = _queue_of(FUNCTIONS[name])
    dead_letter_queue = QUEUES[queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
    # When we list what the template's alarms watch
    watched = {_watched(alarm) for alarm in ALARMS.values()}
    # Then a failed or throttled invocation, a job waiting too long to start and a dead letter
    # each raise one
    assert ("AWS/Lambda", "Errors", "FunctionName", name) in watched
    assert ("AWS/Lambda", "Throttles", "FunctionName", name) in watched
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue) in watched
    dead_letters = ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")
    assert (*dead_letters, dead_letter_queue["Fn::GetAtt"][0]) in watched


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_notifies_the_alarm_topic_and_keeps_quiet_when_idle(name: str) -> None:
    # Given an alarm
    alarm = ALARMS[name]
    # Then it tells the alarm topic, and a metric without data (an idle worker) is no alarm
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # And any error, throttle or dead letter counts; a queue's age counts past 5 minutes (by
    # default), and a late start is reported within 5 minutes more
    threshold = float(_parameter_default(alarm["Threshold"]))
    if alarm["MetricName"] == "ApproximateAgeOfOldestMessage":
        assert alarm["Statistic"] == "Maximum"
        # (the nightly batch's queue holds a backlog by design: its block allows 2 hours)
        assert 0 < threshold <= (7200 if name.startswith("Nightly") else 300)
        assert alarm["Period"] * alarm["EvaluationPeriods"] <= 300
    else:
        assert threshold == 0


def test_the_alarm_topic_uses_a_key_of_its_own_that_cloudwatch_may_use() -> None:
    # Given the topics the alarms notify
    topics = {action["Ref"] for alarm in ALARMS.values() for action in alarm["AlarmActions"]}
    assert topics
    for topic in topics:
        # Then each is encrypted with a customer-managed key of the stack (CloudWatch cannot
        # use the AWS-managed alias/aws/sns: its alarms would never arrive)
        key_id = RESOURCES[topic]["Properties"].get("KmsMasterKeyId")
        assert isinstance(key_id, dict) and set(key_id) == {"Ref"}, key_id
        key = RESOURCES[key_id["Ref"]]
        assert key["Type"] == "AWS::KMS::Key"
        assert key["Properties"]["EnableKeyRotation"] is True
        statements = key["Properties"]["KeyPolicy"]["Statement"]
        # And the key's policy lets CloudWatch encrypt for it, on this account's behalf only
        (cloudwatch,) = [
            s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        ]
        assert cloudwatch["Effect"] == "Allow"
        assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        condition = cloudwatch["Condition"]["StringEquals"]
        assert condition == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        # And the account itself administers it (a key nobody may manage cannot be fixed)
        (account,) = [s for s in statements if "AWS" in s["Principal"]]
        assert account["Principal"]["AWS"]["Fn::Sub"].endswith(":iam::${AWS::AccountId}:root")
        assert account["Effect"] == "Allow"


# The retention periods CloudWatch Logs accepts (PutRetentionPolicy).
LOG_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731}
LOG_RETENTION_DAYS |= {1096, 1827, 2192, 2557, 2922, 3288, 3653}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_logs_to_a_log_group_whose_logs_expire(name: str) -> None:
    # Given the stack's log groups
    groups = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::Logs::LogGroup"]
    # Then the function's own (the group Lambda writes to) is one, kept LogRetentionDays
    (group,) = [g for g in groups if g["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # And that parameter takes only what CloudWatch Logs accepts, 30 days unless told
    parameter = template()["Parameters"]["LogRetentionDays"]
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 30
    assert set(parameter["AllowedValues"]) <= LOG_RETENTION_DAYS
    assert parameter["Default"] in parameter["AllowedValues"]


@pytest.mark.parametrize("name", TABLES + DEAD_LETTER_QUEUES)
def test_tables_and_dead_letter_queues_outlive_the_stack(name: str) -> None:
    # Given a resource that holds data: a table, or a queue another queue dead-letters to
    resource = RESOURCES[name]
    # Then deleting the stack, or an update that replaces it, keeps it
    assert resource.get("DeletionPolicy") == "Retain"
    assert resource.get("UpdateReplacePolicy") == "Retain"


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_knows_its_queues_max_receive_count(name: str) -> None:
    # Given a worker and the redrive policy of the queue that triggers it
    queue = QUEUES[_queue_of(FUNCTIONS[name])]["Properties"]
    env = FUNCTIONS[name]["Properties"]["Environment"]["Variables"]
    # Then its JOBKIT_MAX_RECEIVE_COUNT is that queue's maxReceiveCount
    assert env["JOBKIT_MAX_RECEIVE_COUNT"] == str(queue["RedrivePolicy"]["maxReceiveCount"])


def test_email_timeouts_are_parameters_whose_defaults_keep_the_six_to_one_rule() -> None:
    # Given the email function's timeout and its queue's visibility timeout
    parameters = template()["Parameters"]
    function = FUNCTIONS["EmailFunction"]["Properties"]
    queue = QUEUES["EmailQueue"]["Properties"]
    # Then both are parameters (a test deploys short ones), and their defaults keep AWS's rule
    assert function["Timeout"] == {"Ref": "EmailFunctionTimeout"}
    assert queue["VisibilityTimeout"] == {"Ref": "EmailVisibilityTimeout"}
    visibility = parameters["EmailVisibilityTimeout"]["Default"]
    assert visibility >= 6 * parameters["EmailFunctionTimeout"]["Default"]


SCHEDULES = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Scheduler::Schedule"}


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
        f
        for f in (FUNCTIONS[name] for name in WORKERS)
        if _queue_of({"Properties": f["Properties"]}) == queue
    ]
    (consumer,) = consumers
    assert (
        consumer["Properties"]["Environment"]["Variables"]["JOBKIT_WORKER_QUEUE"] == job_type.queue
    )
    assert props["Target"]["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].endswith("DeadLetterQueue")
    assert props["GroupName"] == {"Ref": "RecurringScheduleGroup"}


def _queue_name(queue: str) -> str:
    """A queue's name, `${AWS::StackName}` for the stack's name."""
    name = QUEUES[queue]["Properties"]["QueueName"]["Fn::Sub"]
    if isinstance(name, str):  # a queue of template.yaml itself, not of a worker block
        return name
    text, variables = name
    assert variables == {"Stack": {"Ref": "AWS::StackName"}}
    return str(text).replace("${Stack}", "${AWS::StackName}")


def test_scheduler_may_send_to_every_worker_queue_and_nothing_else() -> None:
    # Given the Scheduler role's one statement
    (policy,) = RESOURCES["SchedulerRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["sqs:SendMessage"]
    # Then it may send to the stack's queues, named <stack>-<name>, and only those: every
    # queue, a worker's added later included, is one of them
    resource = statement["Resource"]["Fn::Sub"]
    assert resource.endswith(":sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-*")
    assert QUEUES
    for queue in QUEUES:
        assert _queue_name(queue).startswith("${AWS::StackName}-")


def _from_sub(node: Any) -> Any:
    """A `${X}` or `${X.Attr}` string of a worker block's JSON parameter as the `Ref` or
    `Fn::GetAtt` it stands for, any other string with variables as a `Fn::Sub`."""
    if isinstance(node, list):
        return [_from_sub(item) for item in node]
    if isinstance(node, dict):
        return {key: _from_sub(value) for key, value in node.items()}
    if m := re.fullmatch(r"\$\{(\w+)\.(\w+)\}", node):
        return {"Fn::GetAtt": [m[1], m[2]]}
    if m := re.fullmatch(r"\$\{([\w:]+)\}", node):
        return {"Ref": m[1]}
    return {"Fn::Sub": node} if "${" in node else node


def _sub_json(node: Any) -> Any:
    """A worker block's `Config` or `Permissions` (a `!Sub` of JSON), read back."""
    return _from_sub(json.loads(node["Fn::Sub"] if isinstance(node, dict) else node))


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    """The function's statements: its own, and its worker block's Permissions."""
    statements = [s for p in function["Properties"].get("Policies", []) for s in p["Statement"]]
    (role,) = {r["Fn::GetAtt"][0] for r in [function["Properties"].get("Role", {})] if r} or {
        name + "Role" for name, f in FUNCTIONS.items() if f is function
    }
    own = RESOURCES.get(role, {}).get("Properties", {}).get("Policies", [])  # a role of its own
    statements += [s for p in own for s in p["PolicyDocument"]["Statement"]]
    for resource in RESOURCES.values():
        properties = resource["Properties"]
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in properties["Roles"]:
            continue
        if _holds(resource.get("Condition")):
            statements += _sub_json(properties["PolicyDocument"])["Statement"]
    return [
        {**s, "Action": [s["Action"]] if isinstance(s["Action"], str) else s["Action"]}
        for s in statements
    ]


def _holds(condition: str | None) -> bool:
    """A worker block's condition: `Fn::Not` of `Fn::Equals` on a literal (given or not)."""
    if condition is None:
        return True
    (equals,) = template()["Conditions"][condition]["Fn::Not"]
    left, right = equals["Fn::Equals"]
    return not (isinstance(left, str) and left == right)


def _environment(name: str) -> dict[str, Any]:
    """A function's environment with its worker block's Config."""
    variables = dict(FUNCTIONS[name]["Properties"]["Environment"]["Variables"])
    return {**_sub_json(variables.pop("JOBKIT_WORKER_CONFIG", "{}")), **variables}


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
    env = _environment("RemindersFunction")
    assert env["JOBKIT_APPLICATIONS_TABLE"] == {"Ref": "ApplicationsTable"}


@pytest.mark.parametrize("name", WORKERS)  # the API function's: tests/unit/test_template_api.py
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
    # Given the queues the reminders function may send to, by name
    sends = sorted(
        _queue_name(r["Fn::GetAtt"][0])
        if "Fn::GetAtt" in r
        else r["Fn::Sub"].split(":${AWS::AccountId}:")[1]
        for s in _statements(FUNCTIONS["RemindersFunction"])
        if "sqs:SendMessage" in s["Action"]
        for r in _resources(s)
    )
    # Then they are the email queue and its own queues
    stack = "${AWS::StackName}"
    assert sends == [f"{stack}-email", f"{stack}-reminders", f"{stack}-reminders-dlq"]


def test_every_worker_finds_every_queue_by_the_stacks_naming() -> None:
    # Given each worker's queues, and the prefix every function (and so every producer in a
    # function) gets
    for name in WORKERS:
        function = FUNCTIONS[name]
        env = function["Properties"]["Environment"]["Variables"]
        prefix, variables = env["JOBKIT_QUEUE_URL_PREFIX"]["Fn::Sub"]
        assert variables == {"Stack": {"Ref": "AWS::StackName"}}
        assert prefix.endswith("/${AWS::AccountId}/${Stack}-")
        # Then its queue is named <stack>-<worker queue>, its DLQ <stack>-<worker queue>-dlq:
        # what Settings makes of the prefix
        worker_queue = env["JOBKIT_WORKER_QUEUE"]
        settings = Settings(queue_url_prefix="${AWS::StackName}-")
        queue, dead = _queue_of(function), env["JOBKIT_DEAD_LETTER_QUEUE_URL"]["Ref"]
        assert _queue_name(queue) == settings.queue_url_of(worker_queue), name
        assert _queue_name(dead) == settings.dead_letter_queue_url_of(worker_queue), name


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
    env = _environment("SyndicationFunction")
    assert env["SYNDICATION_RATE_LIMIT_TABLE"] == {"Ref": "RateLimitsTable"}
    assert env["SYNDICATION_PARTNERS_PATH"] == {"Ref": "SyndicationPartnersPath"}
