"""Job pages fed by the job log's stream (`jobkit.pages_feed`, functions/pages): a job waiting
in its queue is listed before any worker claims it, once, page after page.

Moto keeps the table's stream records in-process; `JobLogStream` reads them as Lambda's poller
does (from LATEST, the mapping's FilterCriteria applied) and hands them to the handler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

from jobkit import JobState, ServiceError
from jobkit.pages_feed import PagesFeed
from jobkit.worker import Worker
from jobkit_tools.local.streams import matches, to_lambda_record
from tests.conftest import Stack, lambda_context, load_function_app, template

from .test_core_support import ECHO, Runs, deliver, make_worker, payload, receive_now, record_calls
from .test_job_paging import flat, walk

MAPPING = template()["Resources"]["JobPagesFunction"]["Properties"]["Events"]["Inserts"]


class JobLogStream:
    """The job log's stream in moto, read from where it was when this was made (LATEST)."""

    def __init__(self) -> None:
        ddb = boto3.client("dynamodb")
        spec = template()["Resources"]["JobsTable"]["Properties"]["StreamSpecification"]
        ddb.update_table(TableName="jobs", StreamSpecification={"StreamEnabled": True, **spec})
        self.arn = ddb.describe_table(TableName="jobs")["Table"]["LatestStreamArn"]
        self.streams = boto3.client("dynamodbstreams")
        (shard,) = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
        )["ShardIterator"]
        self.patterns = [f["Pattern"] for f in MAPPING["Properties"]["FilterCriteria"]["Filters"]]

    def event(self, *, filtered: bool = True) -> dict[str, Any]:
        """The records written since the last call, as Lambda's event (only those the
        mapping's filter lets through, unless `filtered` is False)."""
        got = self.streams.get_records(ShardIterator=self.iterator)
        self.iterator = got["NextShardIterator"]
        records = [to_lambda_record(r, self.arn) for r in got["Records"]]
        return {"Records": [r for r in records if not filtered or matches(self.patterns, r)]}


@pytest.fixture
def stream(stack: Stack) -> Iterator[JobLogStream]:
    yield JobLogStream()


def feed(stack: Stack, event: dict[str, Any]) -> dict[str, int]:
    return PagesFeed(stack.settings).handle(DynamoDBStreamEvent(event))


def enqueue(stack: Stack, ids: list[str], **options: Any) -> None:
    for job_id in ids:
        stack.client.enqueue(ECHO, payload(), job_id=job_id, **options)
        time.sleep(0.002)  # a millisecond of its own: the log's times are in milliseconds


def test_an_enqueued_job_is_listed_before_any_worker_runs(
    stack: Stack, stream: JobLogStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two jobs waiting in the queue and one scheduled for later; no worker has run
    enqueue(stack, ["wait-1", "wait-2"])
    enqueue(stack, ["later-1"], delay=600)
    # When the pages function gets the stream's batch, as Lambda invokes it
    app = load_function_app("pages")
    monkeypatch.setattr(app.feed, "_settings", stack.settings)
    calls = record_calls()
    result = app.lambda_handler(stream.event(), lambda_context("JobPagesFunction"))
    # Then it wrote one page for the queue, naming the three jobs
    assert result == {"pages": 1, "jobs": 3}
    (page,) = [p for p in calls.params["PutItem"] if p["TableName"] == "pages"]
    assert page["Item"]["queue"] == {"S": "email"}
    # And the listing without a state shows them, newest enqueued first, as they are
    listed = stack.client.find_jobs()
    assert [(j.id, j.state) for j in listed.jobs] == [
        ("later-1", JobState.SCHEDULED),
        ("wait-2", JobState.QUEUED),
        ("wait-1", JobState.QUEUED),
    ]
    assert listed.next_token is None
    # And so do a search by id prefix and the listing of queued jobs
    assert [j.id for j in stack.client.list_jobs(id_prefix="wait-1")] == ["wait-1"]
    assert [j.id for j in stack.client.list_jobs(state="queued")] == ["wait-2", "wait-1"]


def test_a_claimed_job_is_listed_once_whichever_page_came_first(
    stack: Stack, stream: JobLogStream
) -> None:
    # Given a job whose stream page was written before a worker claimed it
    enqueue(stack, ["first-paged"])
    feed(stack, stream.event())
    # And one the worker claimed before its stream page was written
    enqueue(stack, ["first-claimed"])
    assert deliver(stack, make_worker(stack, Runs()), receive_now(stack)) == []
    feed(stack, stream.event())
    # When they are listed, one at a time and all at once
    one_by_one = walk(stack.client, 1)
    listed = stack.client.list_jobs()
    # Then each is there once, as it is now
    assert flat(one_by_one) == ["first-claimed", "first-paged"]
    assert [(j.id, j.state) for j in listed] == [
        ("first-claimed", JobState.SUCCEEDED),
        ("first-paged", JobState.SUCCEEDED),
    ]


def test_paging_lists_every_waiting_and_every_run_job_once_newest_first(
    stack: Stack, stream: JobLogStream
) -> None:
    # Given 25 jobs enqueued in three stream batches (three stream pages)
    ids = [f"job-{i:02d}" for i in range(25)]
    for start in (0, 10, 20):
        enqueue(stack, ids[start : start + 10])
        feed(stack, stream.event())
    # When they are listed four at a time, before any worker runs
    before = walk(stack.client, 4)
    # Then every job comes once, newest enqueued first, in full pages but the last
    assert flat(before) == ids[::-1]
    assert [len(p) for p in before] == [4, 4, 4, 4, 4, 4, 1]
    # When a worker then runs the ten oldest (a worker page) and they are listed again
    messages = sorted(stack.receive(stack.queue_url), key=lambda m: m["Body"])
    assert deliver(stack, make_worker(stack, Runs()), messages[:10]) == []
    after = walk(stack.client, 3)
    # Then still every job comes once, each page newest enqueued first
    assert sorted(flat(after)) == ids
    assert all(page == sorted(page, reverse=True) for page in after)
    states = {j.id: j.state for j in stack.client.list_jobs(limit=30)}
    assert [states[i] for i in ids] == [JobState.SUCCEEDED] * 10 + [JobState.QUEUED] * 15


def test_a_batch_lambda_retries_names_its_jobs_twice_and_they_are_listed_once(
    stack: Stack, stream: JobLogStream
) -> None:
    # Given a stream batch whose pages were written twice (Lambda retried it)
    enqueue(stack, ["again-1", "again-2", "again-3"])
    event = stream.event()
    feed(stack, event)
    time.sleep(0.002)
    feed(stack, event)
    # When the jobs are listed, two at a time
    pages = walk(stack.client, 2)
    # Then each comes once
    assert flat(pages) == ["again-3", "again-2", "again-1"]


def test_a_page_that_cannot_be_written_fails_the_batch(
    stack: Stack, stream: JobLogStream, stdout: pytest.CaptureFixture[str]
) -> None:
    # Given a job enqueued while the pages table is gone
    pages_table = template()["Resources"]["JobPagesTable"]["Properties"]
    ddb = boto3.client("dynamodb")
    ddb.delete_table(TableName="pages")
    enqueue(stack, ["lost-page"])
    event = stream.event()
    # When the pages function gets the batch
    with pytest.raises(ServiceError) as raised:
        feed(stack, event)
    # Then the invocation fails (Lambda retries the batch), saying why in the log
    assert raised.value.operation == "PutItem"
    assert stdout.readouterr().out.count("job page not written") == 1
    # When the table is back and Lambda retries the batch
    ddb.create_table(
        TableName="pages",
        AttributeDefinitions=pages_table["AttributeDefinitions"],
        KeySchema=pages_table["KeySchema"],
        BillingMode=pages_table["BillingMode"],
    )
    assert feed(stack, event) == {"pages": 1, "jobs": 1}
    # Then the job is listed
    assert [j.id for j in stack.client.list_jobs()] == ["lost-page"]


def test_only_inserts_of_job_items_name_jobs(
    stack: Stack, stream: JobLogStream, stdout: pytest.CaptureFixture[str]
) -> None:
    # Given a job enqueued and run (an INSERT, then the claim's and the outcome's MODIFYs)
    enqueue(stack, ["modified"])
    assert deliver(stack, make_worker(stack, Runs()), receive_now(stack)) == []
    event = stream.event(filtered=False)
    names = [r["eventName"] for r in event["Records"]]
    assert names[0] == "INSERT" and names.count("MODIFY") >= 2
    # And, in the same batch, an INSERT of an item that is not a job (no queue)
    stray = {**event["Records"][0], "eventName": "INSERT"}
    stray["dynamodb"] = {**stray["dynamodb"], "NewImage": {"pk": {"S": "not-a-job"}}}
    event["Records"].append(stray)
    calls = record_calls()
    # When the handler gets every record, unfiltered
    result = feed(stack, event)
    # Then one page names the job, once; the stray is left out and the log says so
    assert result == {"pages": 1, "jobs": 1}
    (page,) = [p for p in calls.params["PutItem"] if p["TableName"] == "pages"]
    assert page["Item"]["jobs"] == {"L": [{"L": [{"S": ECHO.name}, {"S": "modified"}]}]}
    assert "stream records skipped" in stdout.readouterr().out
    # And the mapping's filter lets only the INSERT through
    assert [r["eventName"] for r in stream.event()["Records"]] == []
    enqueue(stack, ["inserted"])
    assert [r["eventName"] for r in stream.event()["Records"]] == ["INSERT"]


def test_as_deployed_the_worker_writes_no_page_and_a_job_stays_listed_from_its_enqueue(
    stack: Stack, stream: JobLogStream
) -> None:
    # Given two jobs enqueued and paged by the stream, and the worker as a stack deploys it
    # (JOBKIT_PAGES_FROM_STREAM: the stream writes the pages)
    enqueue(stack, ["deployed-1", "deployed-2"])
    feed(stack, stream.event())
    worker = Worker("email", stack.worker_settings().model_copy(update={"pages_from_stream": True}))
    seen_running: list[list[str]] = []

    def runs(p: Any, ctx: Any) -> None:
        seen_running.append([j.id for j in stack.client.list_jobs(state="running")])

    worker.processor(ECHO)(runs)
    calls = record_calls()
    # When the worker runs them
    assert deliver(stack, worker, receive_now(stack)) == []
    # Then it wrote no page, and each job was listed while it ran, and is listed now, once
    assert [p for p in calls.params.get("PutItem", []) if p["TableName"] == "pages"] == []
    assert seen_running == [["deployed-1"], ["deployed-2"]]
    assert [(j.id, j.state) for j in stack.client.list_jobs()] == [
        ("deployed-2", JobState.SUCCEEDED),
        ("deployed-1", JobState.SUCCEEDED),
    ]


def test_bulk_cancel_reaches_jobs_waiting_in_the_queue(stack: Stack, stream: JobLogStream) -> None:
    # Given two jobs waiting in the queue, paged by the stream, and another one
    enqueue(stack, ["maint-1", "maint-2", "keep-1"])
    feed(stack, stream.event())
    # When the waiting ones named `maint-` are cancelled in bulk (as for maintenance)
    result = stack.client.cancel_many(id_prefix="maint-")
    # Then both are cancelled, and the other still waits
    assert sorted(result.done) == ["maint-1", "maint-2"] and result.failed == []
    assert stack.client.get_job("keep-1").state is JobState.QUEUED  # type: ignore[union-attr]
    # And when the worker gets the three messages, it runs only the one not cancelled
    runs = Runs()
    assert deliver(stack, make_worker(stack, runs), receive_now(stack)) == []
    assert [job_id for _, job_id, _ in runs.calls] == ["keep-1"]
    assert stack.client.get_job("maint-1").state is JobState.CANCELLED  # type: ignore[union-attr]
