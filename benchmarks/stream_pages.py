"""What the job pages fed by the job log's stream cost per job (`jobkit.pages_feed`,
`JobPagesFunction`): one Lambda request and one page write (1 write unit per KB) per queue per
stream batch, so per job it depends on how many INSERTs a batch gathers.

The scenario's own stream records are read from moto (DynamoDB Streams' GetRecords for a
Lambda trigger is free), kept if the mapping's filter lets them through (INSERTs), and handed
to the function's handler in batches of 1, 10 and 100 INSERTs. A batch gathers what the
mapping's 10 s window sees: one job when jobs come less than once per 10 s, 10 at one job a
second, 100 at ten (up to 1,000). The pages it writes are counted by the request meter, each
batching in a tally of its own; the handler's CPU is timed around it (moto's in-process
PutItem included: an overestimate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks._common import template
from benchmarks.meter import Meter, Tally

BATCHES = (1, 10, 100)  # INSERTs per stream batch


@dataclass(frozen=True)
class StreamCost:
    """The pages function's work for a scenario's INSERTs, at one batching."""

    invocations: int
    page_writes: int
    write_units: int
    cpu_s: float  # the handler's CPU, all invocations


class StreamTap:
    """The job log's stream in moto, enabled as template.yaml declares it, read from LATEST."""

    def __init__(self, table: str) -> None:
        import boto3

        properties = template()["Resources"]["JobsTable"]["Properties"]
        ddb = boto3.client("dynamodb")  # not hooked: setting up is not the scenario's cost
        spec = {"StreamEnabled": True, **properties["StreamSpecification"]}
        ddb.update_table(TableName=table, StreamSpecification=spec)
        self.arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.streams = boto3.client("dynamodbstreams")
        (shard,) = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
        )["ShardIterator"]

    def inserts(self) -> list[dict[str, Any]]:
        """Every record since the tap was made that the mapping lets through, as Lambda
        hands them to the function."""
        from jobkit_tools.local.streams import matches, to_lambda_record

        function = template()["Resources"]["JobPagesFunction"]["Properties"]
        (event,) = function["Events"].values()
        patterns = [f["Pattern"] for f in event["Properties"]["FilterCriteria"]["Filters"]]
        records: list[dict[str, Any]] = []
        while True:
            got = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = got["NextShardIterator"]
            if not got["Records"]:
                return [r for r in records if matches(patterns, r)]
            records += [to_lambda_record(r, self.arn) for r in got["Records"]]


def feed(meter: Meter, tap: StreamTap, settings: Any) -> dict[int, StreamCost]:
    """Run the pages function's handler on the tap's INSERTs at each batching; the scenario's
    own tally is left as it was."""
    from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

    from jobkit.pages_feed import PagesFeed

    records = tap.inserts()
    saved, phase = meter.tally, meter.phase
    costs = {}
    try:
        for size in BATCHES:
            meter.tally, meter.phase = Tally(), "stream"
            cpu = 0.0
            batches = [records[i : i + size] for i in range(0, len(records), size)]
            for batch in batches:
                started = time.process_time()
                PagesFeed(settings).handle(DynamoDBStreamEvent({"Records": batch}))
                cpu += time.process_time() - started
            tally = meter.tally
            costs[size] = StreamCost(len(batches), tally.page_writes, tally.page_wu, cpu)
    finally:
        meter.tally, meter.phase = saved, phase
    return costs


def dollars_per_million(cost: StreamCost, n: int, prices: dict[str, Any]) -> float:
    """US dollars per million jobs: the write units, and each invocation's request and its
    duration (the handler's CPU at the function's 256 MB share, a DynamoDB call per page, the
    invoke overhead)."""
    lam, assumed = prices["lambda"], prices["assumptions"]
    if not cost.invocations:
        return 0.0
    cpu_share = min(1.0, lam["memory_mb"] / lam["full_vcpu_at_mb"])
    duration_ms = (
        cost.cpu_s * 1000 / cpu_share
        + cost.page_writes * assumed["dynamodb_write_latency_ms"]
        + cost.invocations * assumed["lambda_invoke_overhead_ms"]
    )
    gb_seconds = lam["memory_mb"] / 1024 * duration_ms / 1000
    per_job = 1e6 / n
    wu = cost.write_units * prices["dynamodb_on_demand"]["per_million_write_request_units"] / 1e6
    requests = cost.invocations * lam["per_million_requests"] / 1e6
    return per_job * (wu + requests + gb_seconds * lam["per_gb_second_x86"])
