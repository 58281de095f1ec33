"""The sizing model: jobs per second and backlog drain times of a worker on Lambda, from the
warm benchmark's CPU per record and the AWS round trips a record makes.

    jobs/s     = MaximumConcurrency x batch size / batch time
    batch time = batch size x (per-record overhead + work per job)
    overhead   = CPU per record / CPU share of the memory      (the warm benchmark, over HTTPS)
               + AWS calls per record x in-region round trip    (claim and outcome: 2)
               + (per-batch calls x round trip + invoke overhead) / batch size

The CPU per record is measured on this machine's core (worker + botocore + HTTP stack, section
2) and scaled to the function's share of a vCPU (256 MB: 0.145 of one, as Lambda allots CPU in
proportion to memory); the round trip and the invoke overhead are prices.json's assumptions,
as in the cost model. Work per job is wall time on Lambda (an API call, a query), not CPU
measured here. The model assumes the event source mapping keeps MaximumConcurrency batches in
flight while there is a backlog (Lambda scales its SQS pollers up to that cap) and that
nothing else (account concurrency, throttling by a downstream) binds first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks._common import prices, template

CONCURRENCY = (2, 5, 20, 50)
BATCH_SIZES = (1, 10)
WORK_S = (0.010, 1.0)
SEEDS_NIGHTLY_JOBS = 30_000  # "nightly batches of tens of thousands", about 1 s of work each
SEEDS_NIGHTLY_WORK_S = 1.0
NIGHTLY_TARGET_S = 2 * 3600
START_TARGET_S = 300  # a fresh job starts within 5 minutes
SEEDS_EMAILS_PER_DAY = 100  # "10-100 emails a day"
SCALE = 10  # the checks hold at 10x the seeds' volumes


@dataclass(frozen=True)
class Model:
    cpu_per_record_s: float  # on a full core
    record_calls: float  # AWS round trips per record
    batch_calls: float  # AWS round trips per batch (the job page)
    round_trip_s: float
    invoke_s: float
    cpu_share: float

    @classmethod
    def from_prices(cls, cpu_per_record_s: float, calls_per_record: float) -> Model:
        """`calls_per_record` as measured in batches of 10: 2 per record (claim and outcome),
        the rest per batch."""
        p = prices()
        lam, assumed = p["lambda"], p["assumptions"]
        batch_calls = max(0.0, round((calls_per_record - 2.0) * 10, 1))
        return cls(
            cpu_per_record_s,
            2.0,
            batch_calls,
            assumed["dynamodb_write_latency_ms"] / 1000,
            assumed["lambda_invoke_overhead_ms"] / 1000,
            min(1.0, lam["memory_mb"] / lam["full_vcpu_at_mb"]),
        )

    def overhead(self, batch: int) -> float:
        """Seconds per record that are not the job's own work."""
        per_batch = self.batch_calls * self.round_trip_s + self.invoke_s
        return (
            self.cpu_per_record_s / self.cpu_share
            + self.record_calls * self.round_trip_s
            + per_batch / batch
        )

    def batch_time(self, batch: int, work_s: float) -> float:
        return batch * (self.overhead(batch) + work_s)

    def jobs_per_s(self, concurrency: int, batch: int, work_s: float) -> float:
        return concurrency * batch / self.batch_time(batch, work_s)

    def drain_s(self, backlog: int, concurrency: int, batch: int, work_s: float) -> float:
        return backlog / self.jobs_per_s(concurrency, batch, work_s)

    def concurrency_for(self, backlog: int, seconds: float, batch: int, work_s: float) -> int:
        """The smallest MaximumConcurrency that drains `backlog` within `seconds`."""
        per_slot = self.jobs_per_s(1, batch, work_s)
        return max(2, -int(-backlog // (per_slot * seconds)))


def fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def deployed_mapping(function: str) -> dict[str, Any]:
    """BatchSize, MaximumConcurrency and Timeout of a function of template.yaml as deployed
    with the default parameters."""
    t = template()
    defaults = {k: v.get("Default") for k, v in t.get("Parameters", {}).items()}

    def value(x: Any) -> Any:
        return defaults.get(x["Ref"]) if isinstance(x, dict) and "Ref" in x else x

    props = t["Resources"][function]["Properties"]
    (event,) = (e["Properties"] for e in props["Events"].values() if e["Type"] == "SQS")
    return {
        "batch": int(value(event.get("BatchSize", 10))),
        "concurrency": int(value(event["ScalingConfig"]["MaximumConcurrency"])),
        "timeout": int(value(props.get("Timeout", 3))),
    }


def print_table(model: Model) -> None:
    backlogs = (SEEDS_NIGHTLY_JOBS, SCALE * SEEDS_NIGHTLY_JOBS)
    print(
        f"  per-record overhead at 256 MB: {model.overhead(10) * 1000:.1f} ms in batches of 10,"
        f" {model.overhead(1) * 1000:.1f} ms alone (CPU {model.cpu_per_record_s * 1000:.2f} ms"
        f" on a full core / {model.cpu_share:.3f}; {model.record_calls:g} round trips of"
        f" {model.round_trip_s * 1000:g} ms a record, {model.batch_calls:g} a batch)"
    )
    head = f"  {'MaxConc':>7} {'batch':>5} {'work':>6} {'jobs/s':>8}"
    print(head + "".join(f" {'drain ' + format(b, ','):>14}" for b in backlogs))
    for concurrency in CONCURRENCY:
        for batch in BATCH_SIZES:
            for work in WORK_S:
                rate = model.jobs_per_s(concurrency, batch, work)
                drains = "".join(f" {fmt_duration(b / rate):>14}" for b in backlogs)
                label = f"{work * 1000:.0f} ms" if work < 1 else f"{work:g} s"
                print(f"  {concurrency:>7} {batch:>5} {label:>6} {rate:>8.1f}{drains}")


def check_defaults(model: Model, enqueue_cpu_s: float) -> dict[str, float]:
    """The seeds' targets against template.yaml's defaults; prints and returns the figures.
    `enqueue_cpu_s`: CPU per job of `enqueue_many` on a full core (the fan-out's per child)."""
    from jobkit_apps.nightly import FAN_OUT

    nightly = deployed_mapping("NightlyFunction")
    email = deployed_mapping("EmailFunction")
    c, b, w = nightly["concurrency"], nightly["batch"], SEEDS_NIGHTLY_WORK_S
    seeds = model.drain_s(SEEDS_NIGHTLY_JOBS, c, b, w)
    tenfold = model.drain_s(SCALE * SEEDS_NIGHTLY_JOBS, c, b, w)
    need = model.concurrency_for(SEEDS_NIGHTLY_JOBS, NIGHTLY_TARGET_S / 2, b, w)
    need10 = model.concurrency_for(SCALE * SEEDS_NIGHTLY_JOBS, NIGHTLY_TARGET_S, b, w)
    emails = SCALE * SEEDS_EMAILS_PER_DAY
    burst = model.drain_s(emails, email["concurrency"], email["batch"], 1.0)
    verdict = "meets" if seeds < NIGHTLY_TARGET_S else "MISSES"
    print(
        f"  nightly, seeds ({SEEDS_NIGHTLY_JOBS:,} jobs x {w:g} s) at the defaults "
        f"(MaximumConcurrency {c}, batch {b}): {fmt_duration(seeds)}, {verdict} the 2 h target"
        f" ({seeds / NIGHTLY_TARGET_S:.0%} of it); with 2x headroom it needs {need}"
    )
    print(
        f"  nightly at {SCALE}x ({SCALE * SEEDS_NIGHTLY_JOBS:,} jobs): {fmt_duration(tenfold)} "
        f"at {c}; within 2 h from MaximumConcurrency {need10}"
    )
    print(
        f"  email at {SCALE}x ({emails:,} a day), the whole day's emails at once, 1 s each, "
        f"MaximumConcurrency {email['concurrency']}: the last starts after {fmt_duration(burst)}"
        f" ({'within' if burst < START_TARGET_S else 'PAST'} 5 min)"
    )
    start = model.drain_s(SEEDS_NIGHTLY_JOBS, c, b, w)
    print(
        f"  a job enqueued behind the nightly backlog on its queue starts after up to "
        f"{fmt_duration(start)} (5 min would take MaximumConcurrency "
        f"{model.concurrency_for(SEEDS_NIGHTLY_JOBS, START_TARGET_S, b, w)})"
    )
    fan_out = SEEDS_NIGHTLY_JOBS * enqueue_cpu_s / model.cpu_share
    largest = int(FAN_OUT.timeout * model.cpu_share / enqueue_cpu_s)
    print(
        f"  the fan-out itself: {enqueue_cpu_s * 1000:.2f} ms of CPU a child on a full core, "
        f"{fmt_duration(fan_out)} for {SEEDS_NIGHTLY_JOBS:,} at 256 MB against its "
        f"{FAN_OUT.timeout:g} s timeout: about {largest:,} children fit"
    )
    return {
        "nightly_s": seeds,
        "nightly_10x_s": tenfold,
        "need": need,
        "need_10x": need10,
        "fan_out_share": fan_out / FAN_OUT.timeout,
    }
