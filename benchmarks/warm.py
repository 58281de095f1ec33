"""Warm cost per record: jobkit's Worker vs a bare Powertools BatchProcessor.

Both get the same batches of 10 SQS records (Lambda event shape). The worker runs the happy
path of a `bench.noop` job (claim, trivial processor, succeed) against moto; the baseline's
record handler only `json.loads` the body. Batches alternate worker / baseline, CPU time
(`time.process_time`) per batch is divided by 10, and medians are compared.

(a) CPU per record including the AWS calls: moto answers in-process, so this counts a fake
    DynamoDB's work that Lambda never pays (informational).
(b) the worker's own CPU per record: (a) minus the time inside botocore's `_make_api_call`.
    This is jobkit's overhead over a bare batch processor, the target.
(c) what a Lambda CPU would run: (b) plus botocore's client-side work (`_make_api_call` minus
    moto's handler), informational, and the input of the cost model's Lambda duration.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

from benchmarks._common import (
    BATCH_SIZE,
    Result,
    bench_job_type,
    fmt_us,
    median,
    moto_stack,
    noop_processor,
    payload,
    queue_arn,
    quiet_logs,
    sqs_event,
)
from benchmarks.timers import timed_aws_calls

TARGET_RATIO = 2.0
ROUNDS = 60
WARMUP = 5


@dataclass
class WarmFigures:
    """Medians per record, in CPU seconds."""

    worker_total: float
    worker_own: float
    worker_client: float  # own + botocore's client side (no moto)
    aws_calls_per_record: float
    bare: float


def _bare_handler() -> Any:
    import json

    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    def record_handler(record: Any) -> Any:
        return json.loads(record.body)

    def handler(event: dict[str, Any], context: Any) -> Any:
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler


def measure(rounds: int = ROUNDS) -> WarmFigures:
    from jobkit.client import EnqueueRequest
    from jobkit.worker import Worker

    jt = bench_job_type()
    bare = _bare_handler()
    with moto_stack() as stack, quiet_logs():
        worker = Worker("email", settings=stack.worker_settings())
        worker.processor(jt)(noop_processor)
        producer = stack.client
        arn = queue_arn(stack.queue_url)
        total: list[float] = []
        own: list[float] = []
        client_side: list[float] = []
        calls: list[float] = []
        base: list[float] = []
        clock = time.process_time
        with timed_aws_calls() as timer:
            for n in range(rounds + WARMUP):
                requests = [
                    EnqueueRequest(jt, payload(n * BATCH_SIZE + i)) for i in range(BATCH_SIZE)
                ]
                result = producer.enqueue_many(requests)
                bodies = [
                    f'{{"v":1,"id":"{o.job_id}","type":"{jt.name}",'
                    f'"payload":{_dump(o.job.payload if o.job else {})},'
                    f'"enqueued_at":"2025-01-01T00:00:00Z"}}'
                    for o in result.outcomes
                ]
                event = sqs_event(bodies, arn)
                pair = [("worker", worker.handle), ("bare", bare)]
                if n % 2:
                    pair.reverse()
                for name, handler in pair:
                    gc.collect()
                    timer.reset()
                    start = clock()
                    response = handler(event, None)
                    spent = clock() - start
                    assert not response["batchItemFailures"], response
                    if n < WARMUP:
                        continue
                    if name == "bare":
                        base.append(spent / BATCH_SIZE)
                    else:
                        total.append(spent / BATCH_SIZE)
                        own.append((spent - timer.api) / BATCH_SIZE)
                        client_side.append((spent - timer.moto) / BATCH_SIZE)
                        calls.append(timer.calls / BATCH_SIZE)
    return WarmFigures(median(total), median(own), median(client_side), median(calls), median(base))


class _CannedDynamoDB:
    """A DynamoDB client that answers the worker's two writes at once, without botocore."""

    def __init__(self, job_type: Any) -> None:
        self.job_type = job_type

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        from jobkit.store import new_item

        if kwargs.get("ReturnValues") != "ALL_NEW":
            return {}
        jt = self.job_type
        item = new_item(kwargs["Key"]["pk"]["S"], jt.name, jt.queue, jt.max_attempts, payload(0))
        values = kwargs["ExpressionAttributeValues"]
        item.update(state={"S": "running"}, attempts={"N": "1"}, lease_until=values[":lease"])
        item.update(started_at=values[":now"], updated_at=values[":now"])
        item.pop("state_shard", None)
        return {"Attributes": item}


def measure_canned(rounds: int = 200) -> dict[str, float]:
    """Cross-check of (b) without moto in the process: the same worker against a canned
    DynamoDB client, at the template's INFO log level and with logging at WARNING."""
    from jobkit import aws
    from jobkit.observability import logger
    from jobkit.settings import Settings
    from jobkit.worker import Worker

    jt = bench_job_type()
    bare = _bare_handler()
    settings = Settings(
        table="jobs",
        queues={"email": "https://sqs/q"},
        worker_queue="email",
        queue_url="https://sqs/q",
        dead_letter_queue_url="https://sqs/dlq",
    )
    worker = Worker("email", settings=settings)
    worker.processor(jt)(noop_processor)
    arn = queue_arn("https://sqs/q")
    level = logger.log_level
    samples: dict[str, list[float]] = {"bare": [], "INFO": [], "WARNING": []}
    saved = dict(aws._clients)
    aws._clients["dynamodb"] = _CannedDynamoDB(jt)
    clock = time.process_time
    try:
        with quiet_logs() as sink:
            for n in range(rounds + WARMUP):
                bodies = [
                    f'{{"v":1,"id":"c{n}-{i}","type":"{jt.name}","payload":{_dump(payload(i))},'
                    f'"enqueued_at":"2025-01-01T00:00:00Z"}}'
                    for i in range(BATCH_SIZE)
                ]
                event = sqs_event(bodies, arn)
                for name in ("INFO", "bare", "WARNING")[:: 1 if n % 2 else -1]:
                    logger.setLevel(name if name != "bare" else level)
                    start = clock()
                    (bare if name == "bare" else worker.handle)(event, None)
                    if n >= WARMUP:
                        samples[name].append((clock() - start) / BATCH_SIZE)
            log_bytes = sink.bytes
    finally:
        logger.setLevel(level)
        aws._clients.clear()
        aws._clients.update(saved)
    figures = {name: median(values) for name, values in samples.items()}
    figures["log_bytes"] = log_bytes
    return figures


def _dump(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def run(rounds: int = ROUNDS) -> tuple[list[Result], WarmFigures]:
    print("\n== 2. Warm cost per record: jobkit Worker vs bare Powertools BatchProcessor ==")
    f = measure(rounds)
    print(f"  {rounds} batches of {BATCH_SIZE} each side, interleaved; CPU medians per record:")
    print(f"  bare BatchProcessor + json.loads            {fmt_us(f.bare)}")
    print(
        f"  worker, all CPU incl. moto        (a)       {fmt_us(f.worker_total)}"
        f"   ({f.aws_calls_per_record:.1f} AWS calls per record)"
    )
    print(f"  worker + botocore client side, no moto (c)  {fmt_us(f.worker_client)}")
    print(f"  worker's own, AWS calls excluded  (b)       {fmt_us(f.worker_own)}")
    canned = measure_canned()
    print("  cross-check without moto (canned DynamoDB answers, no botocore), per record:")
    print(f"  bare BatchProcessor + json.loads            {fmt_us(canned['bare'])}")
    print(f"  worker, INFO logs (as deployed)   (b')      {fmt_us(canned['INFO'])}")
    print(f"  worker, WARNING logs                        {fmt_us(canned['WARNING'])}")
    ratio_a = f.worker_total / f.bare
    ratio_b = f.worker_own / f.bare
    ratio_c = f.worker_client / f.bare
    print(f"  ratio (a) incl. moto calls      = {ratio_a:6.1f}x  (informational)")
    print(f"  ratio (c) incl. botocore client = {ratio_c:6.1f}x  (informational)")
    print(f"  ratio (b) worker's own overhead = {ratio_b:6.1f}x  (target <= {TARGET_RATIO})")
    ratio_canned = canned["INFO"] / canned["bare"]
    ratio_quiet = canned["WARNING"] / canned["bare"]
    print(f"  ratio (b') no moto, INFO logs   = {ratio_canned:6.1f}x  (cross-check of b)")
    print(f"  ratio     no moto, WARNING logs = {ratio_quiet:6.1f}x  (what logging costs)")
    return [
        Result("warm", "(a) CPU/record incl. moto / bare", ratio_a, None, "x"),
        Result("warm", "(c) CPU/record incl. botocore / bare", ratio_c, None, "x"),
        Result("warm", "(b) own CPU/record, AWS excluded / bare", ratio_b, TARGET_RATIO, "x"),
        Result("warm", "(b') own CPU/record, canned AWS / bare", ratio_canned, None, "x"),
    ], f
