"""The local stack runs a DynamoDB stream mapping as Lambda does (streams.py): a job waiting in
a paused queue is listed, before any worker claims it, from the page the stream's function
wrote for its INSERT; and a stream batch that keeps failing is split, retried and recorded."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobkit import JobState
from jobkit.client import Jobkit
from jobkit_apps.email import SEND_WELCOME
from jobkit_tools.local import LocalStack
from jobkit_tools.local.stack import client

from .conftest import wait_until

# The stream mapping's batching window is 10 s and its poller reads about every second; the
# rest is room for a busy machine.
LISTED_WITHIN_S = 60


def test_a_job_waiting_in_a_paused_queue_is_listed_and_found_by_id_prefix(
    producer: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given the stack's stream poller, and the email queue paused (no worker claims a job)
    (stream,) = jobkit_stack.stream_pollers
    assert stream.function.logical_id == "JobPagesFunction"
    assert stream.mapping.starting_position == "LATEST"
    (poller,) = [p for p in jobkit_stack.pollers if p.function.logical_id == "EmailFunction"]
    assert producer.pause_queue("email") == ["Disabled"]
    job_id = f"waiting-{uuid.uuid4().hex[:8]}"
    try:
        wait_until(poller.paused.is_set, 15, what="the email poller to hold off")
        # When a job is enqueued to it
        producer.enqueue(SEND_WELCOME, {"to": f"{job_id}@example.com", "name": "W"}, job_id=job_id)

        # Then the listing without a state shows it, queued, once the stream's page is written
        def listed() -> list[tuple[str, JobState]]:
            return [(j.id, j.state) for j in producer.find_jobs().jobs if j.id == job_id]

        shown = wait_until(listed, LISTED_WITHIN_S, what="the job in the listing")
        assert shown == [(job_id, JobState.QUEUED)]
        # And a search by id prefix finds it
        found = producer.find_jobs(id_prefix=job_id)
        assert [(j.id, j.state) for j in found.jobs] == [(job_id, JobState.QUEUED)]
        # And the stream's function got its INSERT in a batch of its own, the MODIFYs of other
        # jobs' runs filtered out before any invocation
        assert stream.stats.batches >= 1
        assert stream.stats.errors == 0
    finally:
        assert producer.resume_queue("email") == ["Enabled"]

    # When the worker has run it, then it is listed once, as it is now
    def succeeded() -> list[str]:
        found = producer.find_jobs(id_prefix=job_id).jobs
        return [j.id for j in found if j.state is JobState.SUCCEEDED]

    assert wait_until(succeeded, LISTED_WITHIN_S, what="the job to succeed") == [job_id]
    assert [j.id for j in producer.find_jobs(id_prefix=job_id).jobs] == [job_id]


# A function fed by a table's stream that fails every batch holding an item marked "fail",
# recording each invocation's records to PROBE_OUT first.
STREAM_PROBE_APP = """
import json, os

def handler(event, context):
    records = event["Records"]
    images = [r["dynamodb"].get("NewImage", {}) for r in records]
    failing = any("fail" in image for image in images)
    seen = {
        "pks": [image["pk"]["S"] for image in images],
        "names": [r["eventName"] for r in records],
        "seqs": [r["dynamodb"]["SequenceNumber"] for r in records],
        "source": records[0]["eventSourceARN"],
        "failed": failing,
    }
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(json.dumps(seen) + "\\n")
    if failing:
        raise RuntimeError("probe asked to fail")
    return {"records": len(records)}
"""

STREAM_PROBE_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Failed:
    Type: AWS::SQS::Queue
  StreamProbe:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: probe/
      Handler: app.handler
      Runtime: python3.13
      Timeout: 5
      Environment: {Variables: {PROBE_OUT: "@OUT@"}}
      Events:
        Items:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Items.StreamArn
            StartingPosition: LATEST
            BatchSize: 4
            MaximumBatchingWindowInSeconds: 1
            FilterCriteria: {Filters: [{Pattern: '{"eventName": ["INSERT"]}'}]}
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 2
            DestinationConfig: {OnFailure: {Destination: !GetAtt Failed.Arn}}
Outputs:
  ItemsTable: {Value: !Ref Items}
  FailedQueueUrl: {Value: !Ref Failed}
"""


@pytest.fixture(scope="module")
def stream_probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    folder = tmp_path_factory.mktemp("stream-probe")
    (folder / "probe").mkdir()
    (folder / "probe" / "app.py").write_text(STREAM_PROBE_APP)
    out = folder / "probe.jsonl"
    (folder / "template.yaml").write_text(STREAM_PROBE_TEMPLATE.replace("@OUT@", str(out)))
    with LocalStack(folder / "template.yaml", log_dir=folder / "logs") as stack:
        yield stack, out


def test_a_failing_stream_batch_is_split_retried_and_recorded(
    stream_probe: tuple[LocalStack, Path],
) -> None:
    stack, out = stream_probe
    ddb = client("dynamodb", stack.endpoint_url)
    table = stack.deployment.outputs["ItemsTable"]
    # Given items written after the stack started, one of which the function always fails on
    for pk in ("a", "b", "c", "d"):
        item = {"pk": {"S": pk}} | ({"fail": {"BOOL": True}} if pk == "c" else {})
        ddb.put_item(TableName=table, Item=item)
    # And an update of one (a MODIFY record, which the mapping's filter drops)
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "2"}})
    sqs = client("sqs", stack.endpoint_url)

    # When the poller has given up on the failing item (its retries and splits used up)
    def recorded() -> list[dict[str, Any]]:
        return sqs.receive_message(
            QueueUrl=stack.deployment.outputs["FailedQueueUrl"], WaitTimeSeconds=1
        ).get("Messages", [])

    (message,) = wait_until(recorded, 60, what="the failed batch's record")

    # Then every other item is handed over in a batch that succeeds (a half split off after
    # the failing one may come after its record)
    def delivered() -> set[str]:
        seen = [json.loads(line) for line in out.read_text().splitlines()]
        return {pk for s in seen if not s["failed"] for pk in s["pks"]}

    wait_until(lambda: delivered() >= {"a", "b", "d"}, 30, what="the other items")
    assert delivered() == {"a", "b", "d"}
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    # And the failing one alone was recorded in the OnFailure queue, as Lambda records it
    (c_seq,) = {seq for s in seen for pk, seq in zip(s["pks"], s["seqs"], strict=True) if pk == "c"}
    info = json.loads(message["Body"])["DDBStreamBatchInfo"]
    assert (info["batchSize"], info["startSequenceNumber"]) == (1, c_seq)
    assert info["streamArn"] == seen[0]["source"]
    # And the update was read and dropped by the filter: no invocation got anything but INSERTs
    (poller,) = stack.stream_pollers
    wait_until(lambda: poller.stats.filtered >= 1, 30, what="the MODIFY to be read")
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert {name for s in seen for name in s["names"]} == {"INSERT"}
