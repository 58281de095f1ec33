"""template.yaml's Jobs HTTP API keeps its rules: no route is public (IAM on every route, also
as SAM translates it), its routes are the API function's, the producer policy reaches the
producer routes only and the operator policy all of them, the function may do what its routes
need and no more. Checked on the template, no AWS needed."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from jobkit_apps.http_api.resolver import build_app, load_job_types, openapi_json
from jobkit_tools.local.stack_template import translate
from tests.conftest import template

RESOURCES: dict[str, Any] = template()["Resources"]
FUNCTION = RESOURCES["ApiFunction"]["Properties"]
EVENTS = {name: e["Properties"] for name, e in FUNCTION["Events"].items()}
ROUTES = {(e["Method"], e["Path"]) for e in EVENTS.values()}
PRODUCER_ROUTES = {
    ("POST", "/types/{type}/jobs"),
    ("GET", "/jobs/{id}"),
    ("POST", "/jobs/{id}/cancel"),
}
# What the stack's values would be, to read its ARNs
VALUES = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "JobsApi": "a1b2c3",
}
# A request's path for each route variable: a job type, job ids (one with a slash, as its
# percent-encoded form may reach IAM decoded), a queue, a message id
SAMPLES = {"{id}": ["email.send_invite", "job-1", "order:1/retry"], "{queue}": ["email"]}
SAMPLES["{type}"] = ["email.send_invite"]
SAMPLES["{message}"] = ["0f6e2a4c"]


def test_the_api_is_iam_authorized_and_no_route_opts_out() -> None:
    # Given the HTTP API and its routes (the function's HttpApi events)
    api = RESOURCES["JobsApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    # Then IAM is its default authorizer, and no route names another (or none)
    assert api["Properties"]["Auth"] == {
        "EnableIamAuthorizer": True,
        "DefaultAuthorizer": "AWS_IAM",
    }
    assert EVENTS and all(e.get("Auth") is None for e in EVENTS.values())
    assert {e["ApiId"]["Ref"] for e in EVENTS.values()} == {"JobsApi"}


def _translated() -> dict[str, Any]:
    """The template as SAM turns it into CloudFormation (code locations as `sam package`)."""
    sam = copy.deepcopy(template())
    for resource in sam["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/code.zip"
    return translate(sam)


def test_every_route_sam_deploys_requires_aws_iam() -> None:
    # When SAM translates the template
    body = _translated()["Resources"]["JobsApi"]["Properties"]["Body"]
    # Then the API's OpenAPI body has exactly the template's routes, each under AWS_IAM
    deployed = {
        (method.upper(), path): operation
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
    }
    assert set(deployed) == ROUTES
    assert all(op["security"] == [{"AWS_IAM": []}] for op in deployed.values())


def test_the_templates_routes_are_the_api_functions_routes() -> None:
    # Given the routes of the function's resolver, from its OpenAPI document
    load_job_types()
    document = json.loads(openapi_json(build_app(lambda: pytest.fail("no client needed"))))
    served = set()
    for path, operations in document["paths"].items():
        for method in operations:
            # a route per job type is one API Gateway route, POST /types/{type}/jobs
            generic = re.sub(r"^/types/[^/{]+/jobs$", "/types/{type}/jobs", path)
            generic = generic.replace("{job_id}", "{id}").replace("{message_id}", "{message}")
            served.add((method.upper(), generic))
    # Then API Gateway routes exactly those to it
    assert served == ROUTES


def _sub(value: Any) -> str:
    """A `!Sub` ARN with the stack's values put in."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return re.sub(r"\$\{([\w:]+)\}", lambda m: VALUES[m.group(1)], text)


def _allows(policy: str, arn: str) -> bool:
    """IAM's answer for one request ARN: an Allow matches and no Deny does (`*` spans `/`)."""
    statements = RESOURCES[policy]["Properties"]["PolicyDocument"]["Statement"]

    def matches(statement: dict[str, Any]) -> bool:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        patterns = [re.escape(_sub(r)).replace(r"\*", ".*").replace(r"\?", ".") for r in resources]
        return statement["Action"] == "execute-api:Invoke" and any(
            re.fullmatch(p, arn) for p in patterns
        )

    allowed = any(matches(s) for s in statements if s["Effect"] == "Allow")
    return allowed and not any(matches(s) for s in statements if s["Effect"] == "Deny")


def _requests(method: str, path: str) -> list[str]:
    """Request ARNs of a route, one per sample value of its variables."""
    paths = [path]
    for variable, samples in SAMPLES.items():
        paths = [p.replace(variable, s) for p in paths for s in samples]
    return [
        f"arn:aws:execute-api:us-east-1:123456789012:a1b2c3/$default/{method}{p}" for p in paths
    ]


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES))
def test_the_producer_policy_reaches_the_producer_routes_only_the_operator_all(
    method: str, path: str
) -> None:
    for arn in _requests(method, path):
        # Then the operator may invoke every route
        assert _allows("JobsApiOperatorPolicy", arn), arn
        # And the producer the enqueue, read and cancel routes, and no other
        assert _allows("JobsApiProducerPolicy", arn) == ((method, path) in PRODUCER_ROUTES), arn


def test_the_api_function_may_do_what_its_routes_need_and_no_more() -> None:
    statements = {s["Sid"]: s for p in FUNCTION["Policies"] for s in p["Statement"]}
    # The job log: read, write and query, on the table and its index only
    assert statements["JobLog"]["Resource"] == [
        {"Fn::GetAtt": ["JobsTable", "Arn"]},
        {"Fn::Sub": "${JobsTable.Arn}/index/*"},
    ]
    # The pages: read only
    assert statements["JobPages"]["Action"] == ["dynamodb:Query"]
    # Queues: the stack's own only
    assert statements["StackQueues"]["Resource"]["Fn::Sub"].endswith(":${AWS::StackName}-*")
    # Scheduler: one-time schedules in the jobs group, and reading the recurring group
    delayed, recurring = statements["DelayedJobSchedules"], statements["ReadRecurringSchedules"]
    assert delayed["Action"] == ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"]
    assert delayed["Resource"]["Fn::Sub"].endswith(":schedule/${JobsScheduleGroup}/jobkit-*")
    assert recurring["Action"] == ["scheduler:GetSchedule"]
    # A worker's mapping: only the stack's functions'
    pause = statements["PauseStackWorkers"]
    function_arn = pause["Condition"]["ArnLike"]["lambda:FunctionArn"]["Fn::Sub"]
    assert function_arn.endswith(":function:${AWS::StackName}-*")
    # No wildcard action, and nothing else
    assert all("*" not in a for s in statements.values() for a in s["Action"])
    assert set(statements) == {
        "JobLog",
        "JobPages",
        "StackQueues",
        "DelayedJobSchedules",
        "ReadRecurringSchedules",
        "PassSchedulerRole",
        "PauseStackWorkers",
        "ListAndReadMetricsInRegion",
    }


def test_the_api_function_finds_the_stack_and_its_health_threshold() -> None:
    env = FUNCTION["Environment"]["Variables"]
    assert env["JOBKIT_TABLE"] == {"Ref": "JobsTable"}
    assert env["JOBKIT_PAGES_TABLE"] == {"Ref": "JobPagesTable"}
    assert env["JOBKIT_QUEUE_URL_PREFIX"]["Fn::Sub"].endswith("/${AWS::StackName}-")
    assert env["JOBKIT_HEALTH_MAX_AGE_SECONDS"] == {"Fn::Sub": "${QueueAgeAlarmSeconds}"}
    assert FUNCTION["Layers"] == [{"Ref": "JobkitLayer"}, {"Ref": "AppsLayer"}]
    # Under the HTTP API's 30 s integration limit
    assert FUNCTION["Timeout"] < 30


def test_the_outputs_give_the_url_and_both_policies() -> None:
    outputs = template()["Outputs"]
    assert "${JobsApi}" in outputs["JobsApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["JobsApiProducerPolicyArn"]["Value"] == {"Ref": "JobsApiProducerPolicy"}
    assert outputs["JobsApiOperatorPolicyArn"]["Value"] == {"Ref": "JobsApiOperatorPolicy"}
