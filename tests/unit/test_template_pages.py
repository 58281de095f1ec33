"""The job log's stream feeds the job pages (`JobPagesFunction`): the template's mapping, its
least-privilege role and its failure trace; and how a batch is cut into pages (no AWS)."""

from __future__ import annotations

import ast
import json
from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

from jobkit.pages_feed import ENTRY_OVERHEAD, MAX_PAGE_BYTES, MAX_PAGE_JOBS, inserted, split
from tests.conftest import ROOT, template

RESOURCES: dict[str, Any] = template()["Resources"]
FUNCTION = RESOURCES["JobPagesFunction"]["Properties"]
(EVENT,) = FUNCTION["Events"].values()
MAPPING = EVENT["Properties"]
# What a DynamoDB item may hold at most (400 KB).
ITEM_LIMIT = 400 * 1024


def test_the_job_log_streams_new_images() -> None:
    table = RESOURCES["JobsTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def test_the_mapping_batches_inserts_only_from_now_on() -> None:
    # Given the pages function's event source
    assert EVENT["Type"] == "DynamoDB"
    assert MAPPING["Stream"] == {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    # Then it starts at the stream's end, batches up to 1,000 records over 10 s
    assert MAPPING["StartingPosition"] == "LATEST"
    assert (MAPPING["BatchSize"], MAPPING["MaximumBatchingWindowInSeconds"]) == (1000, 10)
    # And lets only INSERT records through (a filtered-out record costs no invocation)
    (only,) = MAPPING["FilterCriteria"]["Filters"]
    assert json.loads(only["Pattern"]) == {"eventName": ["INSERT"]}


def test_a_batch_that_keeps_failing_is_split_retried_a_few_times_and_recorded() -> None:
    # Given the mapping's error handling
    assert MAPPING["BisectBatchOnFunctionError"] is True
    assert 0 < MAPPING["MaximumRetryAttempts"] <= 20
    # Then a batch given up on is recorded in an encrypted queue of the stack, which an alarm
    # watches
    destination = MAPPING["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["JobPagesFailureQueue", "Arn"]}
    queue = RESOURCES["JobPagesFailureQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    alarms = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = [a["Dimensions"][0]["Value"] for a in alarms if a["Namespace"] == "AWS/SQS"]
    assert {"Fn::GetAtt": ["JobPagesFailureQueue", "QueueName"]} in watched


def test_the_function_may_read_the_stream_and_write_pages_and_nothing_more() -> None:
    # Given the function's own role (SAM's would read every stream of the account)
    role_name = FUNCTION["Role"]["Fn::GetAtt"][0]
    role = RESOURCES[role_name]["Properties"]
    assert FUNCTION.get("Policies") is None
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "lambda.amazonaws.com"}
    (managed,) = role["ManagedPolicyArns"]
    assert managed["Fn::Sub"].endswith(":policy/service-role/AWSLambdaBasicExecutionRole")
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    grants = {(tuple(s["Action"]), json.dumps(s["Resource"], sort_keys=True)) for s in statements}
    # Then it may put pages, read the job log's stream, record a failed batch: no more
    stream = {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    assert grants == {
        (("dynamodb:PutItem",), json.dumps({"Fn::GetAtt": ["JobPagesTable", "Arn"]})),
        (
            ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"),
            json.dumps(stream),
        ),
        (("dynamodb:ListStreams",), json.dumps({"Fn::Sub": "${JobsTable.Arn}/stream/*"})),
        (("sqs:SendMessage",), json.dumps({"Fn::GetAtt": ["JobPagesFailureQueue", "Arn"]})),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    # And it knows the pages table only (it never reads the job log itself)
    variables = FUNCTION["Environment"]["Variables"]
    assert variables["JOBKIT_PAGES_TABLE"] == {"Ref": "JobPagesTable"}
    assert "JOBKIT_TABLE" not in variables


def test_the_handler_is_decorators_and_one_call() -> None:
    tree = ast.parse((ROOT / "functions" / "pages" / "app.py").read_text(encoding="utf-8"))
    (handler,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert handler.name == FUNCTION["Handler"].split(".")[1]
    assert len(handler.decorator_list) == 2
    (statement,) = handler.body
    assert isinstance(statement, ast.Return) and isinstance(statement.value, ast.Call)


def test_a_large_batch_is_cut_into_pages_a_dynamodb_item_holds() -> None:
    # Given 1,000 jobs with the longest ids there are (512 characters)
    jobs = [("email.send_invite", f"{i:04d}" + "x" * 508) for i in range(1_000)]
    # When they are cut into pages, with room for a thousand jobs a page
    pages = split(jobs, limit=MAX_PAGE_BYTES)
    # Then every job is in one, in order, and every page fits in an item with room to spare
    assert [job for page in pages for job in page] == jobs
    for page in pages:
        size = sum(len(t) + len(i) + ENTRY_OVERHEAD for t, i in page)
        assert size <= MAX_PAGE_BYTES < ITEM_LIMIT - 1024
    # And at a byte limit below MAX_PAGE_JOBS of them, pages are cut by size
    assert len(split(jobs[:100], limit=20_000)) == 3


def test_a_page_names_at_most_a_hundred_jobs_so_a_listing_reads_little() -> None:
    # Given 1,000 jobs with short ids (all in one item by size)
    jobs = [("t", str(i)) for i in range(1_000)]
    # When they are cut into pages
    pages = split(jobs)
    # Then ten pages of MAX_PAGE_JOBS, in order
    assert [len(page) for page in pages] == [MAX_PAGE_JOBS] * 10
    assert [job for page in pages for job in page] == jobs
    assert split([]) == []


def test_only_job_inserts_are_named_by_queue_in_stream_order() -> None:
    # Given a batch with inserts of two queues, a MODIFY and an item that is not a job
    def record(name: str, image: dict[str, str]) -> dict[str, Any]:
        new_image = {k: {"S": v} for k, v in image.items()}
        return {"eventName": name, "dynamodb": {"NewImage": new_image}}

    event = DynamoDBStreamEvent(
        {
            "Records": [
                record("INSERT", {"pk": "a", "type": "t.a", "queue": "email"}),
                record("MODIFY", {"pk": "b", "type": "t.a", "queue": "email"}),
                record("INSERT", {"pk": "c", "type": "t.c", "queue": "nightly"}),
                record("INSERT", {"pk": "d"}),
                record("INSERT", {"pk": "e", "type": "t.a", "queue": "email"}),
            ]
        }
    )
    # Then the jobs are named by queue, in order, and the stray is counted
    assert inserted(event) == (
        {"email": [("t.a", "a"), ("t.a", "e")], "nightly": [("t.c", "c")]},
        1,
    )
