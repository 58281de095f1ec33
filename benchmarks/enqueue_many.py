"""enqueue_many: one conditional PutItem per job (today) against BatchWriteItem (before).

N jobs go in with one `enqueue_many` call, three ways: generated ids, caller-given ids that
are all new, and caller-given ids of which every tenth was enqueued before (the caller
sending a batch again). Each way twice, in the same run and the same kind of fresh moto
stack: with today's `Jobkit.enqueue_many` (a conditional PutItem per job,
`jobkit.aws.ENQUEUE_THREADS` in parallel, no read first) and with a baseline that does what
it did before (`batch_enqueue_many` in enqueue_many_runs.py: BatchGetItem of the given ids
100 a call, BatchWriteItem of the new ones 25 a call, then the same SendMessageBatch 10 a
call).

Two passes (enqueue_many_runs.py). The counting pass hooks the request meter (meter.py) on
jobkit's clients (requests; write units of the table and of each index from the item images
around each write, a failed conditional put billed as DynamoDB bills it; read units, 1 per key
read whether found or not). The timing pass runs unhooked and times the part of the call that
differs, the DynamoDB writes (and reads) as each side makes them (see `timed`): wall time
(`perf_counter`), the process's CPU during it, and the CPU spent in moto's request handler
(per thread: `thread_time`), several runs of each side, alternating which goes first. moto
answers in-process, under the GIL: its wall times are not DynamoDB's (see `aws_estimate`).
Last, the property the condition is for: two producers that enqueue the same new ids at the
same time.
"""

from __future__ import annotations

import statistics
import time

from benchmarks import capacity
from benchmarks._common import Result, prices, template
from benchmarks.enqueue_many_runs import RACE_IDS, Case, Timing, count, race, timed
from benchmarks.meter import Tally

N_JOBS = 1000
RUNS = 5  # timed runs per side and case
SIDES = ("conditional", "batch")
SIDE_TITLE = {
    "conditional": "conditional PutItem (today)",
    "batch": "BatchGetItem + BatchWriteItem (before)",
}
# Latencies of one in-region call on AWS, assumed (not measured here) for the estimate.
PUT_MS = (5.0, 10.0)  # one PutItem
BATCH_MS = (10.0, 30.0)  # one BatchWriteItem of 25 items (a BatchGetItem of 100 keys alike)


CASES = [
    Case("generated", "generated ids", False, False),
    Case("given", "given ids, all new", True, False),
    Case("exists", "given ids, 10 % exist", True, True),
]


# -- figures -----------------------------------------------------------------------------------


def dollars(t: Tally, n: int) -> dict[str, float]:
    """US dollars per million jobs of the enqueue call alone (the rest of a job is the same on
    both sides), from prices.json."""
    p = prices()
    ddb = p["dynamodb_on_demand"]
    per = 1.0 / n
    return {
        "dynamodb": t.write_units * per * ddb["per_million_write_request_units"]
        + t.read_units * per * ddb["per_million_read_request_units"],
        "sqs": t.sqs_billed * per * p["sqs"]["standard_per_million_requests"],
    }


def aws_estimate(t: Tally, client_cpu: float) -> tuple[float, float]:
    """Seconds the DynamoDB part of one call would take on AWS: an estimate from the assumed
    latencies (PUT_MS, BATCH_MS), the requests counted and the client's own CPU measured here
    (jobkit + botocore, on one core of this machine), not a measurement. Batch calls go one
    after the other: their waits and their CPU add up. Puts go in ENQUEUE_THREADS lanes whose
    waits overlap, but the GIL runs their CPU one thread at a time: at least the longer of
    the two, at most both."""
    from jobkit import aws

    rounds = t.calls["dynamodb:PutItem"] / aws.ENQUEUE_THREADS
    batches = t.calls["dynamodb:BatchWriteItem"] + t.calls["dynamodb:BatchGetItem"]
    low = (rounds * PUT_MS[0] + batches * BATCH_MS[0]) / 1e3
    high = (rounds * PUT_MS[1] + batches * BATCH_MS[1]) / 1e3
    if rounds:
        return max(low, client_cpu), high + client_cpu
    return low + client_cpu, high + client_cpu


def _stats(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def run(quick: bool = False) -> list[Result]:
    from jobkit import aws

    n = 100 if quick else N_JOBS
    runs = 2 if quick else RUNS
    started = time.monotonic()
    print(
        f"\n== 6. enqueue_many: conditional puts against BatchWriteItem ({n:,} jobs a call, "
        f"{aws.ENQUEUE_THREADS} threads, moto in-process) =="
    )
    tallies = {(c.key, side): count(c, side, n) for c in CASES for side in SIDES}
    timings: dict[tuple[str, str], list[Timing]] = {key: [] for key in tallies}
    for r in range(runs):
        for c in CASES:
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                timings[(c.key, side)].append(timed(c, side, n))
    races = {side: race(side) for side in SIDES}

    keys = list(tallies)
    width = 12
    print("  " + " " * 36 + "".join(f"{c.title:>{2 * width}}" for c in CASES))
    print(
        "  " + f"{'per job':<36}" + "".join(f"{'cond.':>{width}}{'batch':>{width}}" for _ in CASES)
    )

    def line(label: str, values: list[float], fmt: str = ".3f") -> None:
        cells = "".join("-".rjust(width) if v == 0 else f"{v:>{width}{fmt}}" for v in values)
        print(f"  {label:<36}{cells}")

    ts = [tallies[k] for k in keys]
    ops = sorted({op for t in ts for op in t.calls})
    for op in ops:
        line(f"  {op}", [t.calls[op] / n for t in ts])
    line("DynamoDB requests", [t.ddb_requests() / n for t in ts])
    line("DynamoDB write requests (items)", [t.item_writes / n for t in ts])
    line("  of which failed conditions", [t.failed_conditions / n for t in ts])
    line("  table write units", [t.table_wu / n for t in ts])
    indexes = capacity.indexes_of(template()["Resources"]["JobsTable"]["Properties"])
    for index in indexes:
        line(f"  index {index.name} write units", [t.index_wu[index.name] / n for t in ts])
    line("write units (all)", [t.write_units / n for t in ts])
    line("read units", [t.read_units / n for t in ts])
    line("SQS requests", [t.sqs_requests() / n for t in ts])
    costs = [dollars(t, n) for t in ts]
    print(f"  $ per million jobs, enqueue only (prices.json, {prices()['region']}):")
    line("    DynamoDB", [c["dynamodb"] for c in costs])
    line("    SQS", [c["sqs"] for c in costs])
    line("    total", [sum(c.values()) for c in costs])

    walls = {k: [t.wall for t in timings[k]] for k in keys}
    print(
        f"  wall time of the DynamoDB part of one call on moto, {runs} runs each (moto's "
        "latency is not DynamoDB's):"
    )
    line("    min ms", [_stats(walls[k])[0] * 1e3 for k in keys], ",.0f")
    line("    median ms", [_stats(walls[k])[1] * 1e3 for k in keys], ",.0f")
    line("    max ms", [_stats(walls[k])[2] * 1e3 for k in keys], ",.0f")
    ratios = {
        c.key: statistics.median(walls[(c.key, "conditional")])
        / statistics.median(walls[(c.key, "batch")])
        for c in CASES
    }
    print(
        "    median conditional / batch       "
        + "".join(f"{ratios[c.key]:>{2 * width - 1}.2f}x" for c in CASES)
    )
    cpu = {k: statistics.median([t.cpu for t in timings[k]]) for k in keys}
    moto = {k: statistics.median([t.moto for t in timings[k]]) for k in keys}
    client_cpu = {k: cpu[k] - moto[k] for k in keys}
    print("  CPU of the DynamoDB part per job, medians (µs):")
    line("    all (every thread)", [cpu[k] / n * 1e6 for k in keys], ",.0f")
    line("    in moto's handler", [moto[k] / n * 1e6 for k in keys], ",.0f")
    line("    the rest: jobkit + botocore", [client_cpu[k] / n * 1e6 for k in keys], ",.0f")
    estimates = {k: aws_estimate(tallies[k], client_cpu[k]) for k in keys}
    print(
        f"  estimate, not measured: the DynamoDB part of one call on AWS (PutItem "
        f"{PUT_MS[0]:g}-{PUT_MS[1]:g} ms in {aws.ENQUEUE_THREADS} lanes; a batch call "
        f"{BATCH_MS[0]:g}-{BATCH_MS[1]:g} ms, one after the other; plus the client CPU above, "
        "on one core like this one):"
    )
    line("    ms, from", [estimates[k][0] * 1e3 for k in keys], ",.0f")
    line("    ms, to", [estimates[k][1] * 1e3 for k in keys], ",.0f")
    print(f"  two producers, the same {RACE_IDS} new ids at once:")
    for side in SIDES:
        outcome = races[side]
        print(
            f"    {SIDE_TITLE[side]:<40} creators per id {outcome.creators / RACE_IDS:.2f}, "
            f"messages per id {outcome.messages / RACE_IDS:.2f}, jobs in the log {outcome.jobs}"
        )
    print("    (the baseline's look-ups both ran before either write: its worst interleaving)")
    print(f"  (enqueue_many benchmark: {time.monotonic() - started:.0f} s)")

    results = []
    for c in CASES:
        cond, batch = tallies[(c.key, "conditional")], tallies[(c.key, "batch")]
        results.append(
            Result(
                "enqueue_many",
                f"{c.title}: $/M jobs enqueue, cond. vs batch",
                sum(dollars(cond, n).values()) / sum(dollars(batch, n).values()),
                None,
                "x",
            )
        )
    results.append(
        Result(
            "enqueue_many",
            "given ids, 10 % exist: WU/job, conditional",
            tallies[("exists", "conditional")].write_units / n,
            None,
        )
    )
    results.append(
        Result(
            "enqueue_many",
            "given ids: DynamoDB part's wall on moto, cond./batch",
            ratios["given"],
            None,
            "x",
        )
    )
    results.append(
        Result(
            "enqueue_many",
            "creators per id, 2 producers at once (cond.)",
            races["conditional"].creators / RACE_IDS,
            None,
        )
    )
    return results
