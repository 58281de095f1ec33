"""AWS requests, capacity units and dollars of delayed, cancelled and recurring jobs.

N jobs (runs, schedules) per scenario, in one moto stack on a frozen clock (time-machine,
`tick=False`, a dev dependency): nothing sleeps, the clock jumps forward. The baseline is a job
enqueued to run now, measured the same way in the same run. Requests are counted as in
requests_per_job.py (meter.py): botocore's `before-call` on jobkit's clients and on the poller
that does what Lambda's event source mapping does (ReceiveMessage 10 at a time,
DeleteMessageBatch of the records not reported as failures; both counted, per record); DynamoDB
capacity from item images (capacity.py). The stack (time_rig.py) has EventBridge Scheduler as
the local stack's `ScheduleFirer` (window 0) on clients of its own: its ListSchedules /
GetSchedule look-ups are emulation and are not counted; the SendMessage of a fire is counted,
since SQS bills it to the queue's owner; the DeleteSchedule after a one-time schedule completed
is Scheduler's own request on AWS, listed apart and not billed; each fire is one billed
Scheduler invocation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from benchmarks import capacity
from benchmarks._common import BATCH_SIZE, Result, payload, prices
from benchmarks.time_rig import (
    SCHEDULE_GROUP,
    Rig,
    TimeTally,
    jobs_table,
    log_counts,
    rig,
)

N_JOBS = 10  # one batch of 10 per scenario, as the ESM would take them
LONG_DELAY = timedelta(hours=2)
SHORT_DELAY = 300


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    per: str = "job"  # what one unit is: a job, a run, a schedule


SCENARIOS = [
    Scenario("now", "enqueue, run now (baseline)"),
    Scenario("delay300", "delay=300 (SQS DelaySeconds)"),
    Scenario("delay2h", "delay=2 h (Scheduler at())"),
    Scenario("cancel2h", "delay=2 h, then cancel"),
    Scenario("cancel300", "delay=300, then cancel"),
    Scenario("cron_run", "recurring: one run, fire to success", "run"),
    Scenario("cron_double", "recurring: 2nd delivery of a run (extra)", "run"),
    Scenario("cron_create", "recurring: Jobkit.schedule() (one-off)", "schedule"),
]
SHORT = {
    "now": "now",
    "delay300": "delay 300s",
    "delay2h": "delay 2h",
    "cancel2h": "cancel 2h",
    "cancel300": "cancel 300s",
    "cron_run": "cron run",
    "cron_double": "2nd fire",
    "cron_create": "cron create",
}


# -- the scenarios ---------------------------------------------------------------------------
# All of them run in one moto stack, one after the other, on a clock that only moves forward;
# each starts with an empty queue and a fresh tally, and checks its own jobs by id.


def _enqueue(r: Rig, n: int, delay: float | timedelta | None) -> set[str]:
    """n jobs with generated ids, as the baseline of requests_per_job.py."""
    r.new_tally()
    r.meter.phase = "enqueue"
    return {r.producer.enqueue(r.jt, payload(i), delay=delay).id for i in range(n)}


def _deliveries(r: Rig, phase: str = "worker") -> None:
    skipped, deferred = log_counts(lambda: r.deliver(phase))
    r.tally.skipped += skipped
    r.tally.deferred += deferred


def run_now(r: Rig, n: int) -> TimeTally:
    ids = _enqueue(r, n, None)
    _deliveries(r)
    r.check(ids, {"succeeded": n})
    return r.tally


def run_delay_short(r: Rig, n: int) -> TimeTally:
    ids = _enqueue(r, n, SHORT_DELAY)
    r.advance(SHORT_DELAY - 1)
    assert r.visible() == 0, "a delayed message showed before its delay"
    r.advance(2)
    _deliveries(r)
    r.check(ids, {"succeeded": n})
    return r.tally


def run_delay_long(r: Rig, n: int) -> TimeTally:
    from jobkit.schedules import FIRE_EARLY_SECONDS

    ids = _enqueue(r, n, LONG_DELAY)
    assert r.schedules(SCHEDULE_GROUP) == n
    r.advance(LONG_DELAY.total_seconds() - FIRE_EARLY_SECONDS - 1)
    assert r.fire() == 0, "a schedule fired early"
    r.advance(1)
    assert r.fire() == n, "not every one-time schedule fired at its time"
    _deliveries(r, "worker early")  # not due yet: hidden again, no attempt
    assert r.tally.deferred == n and r.states(ids) == {"scheduled": n}
    r.advance(FIRE_EARLY_SECONDS + 1)
    assert r.fire() == 0
    _deliveries(r)
    r.check(ids, {"succeeded": n})
    return r.tally


def run_cancel(r: Rig, n: int, delay: float | timedelta) -> TimeTally:
    ids = _enqueue(r, n, delay)
    r.meter.phase = "cancel"
    for job_id in ids:
        r.producer.cancel(job_id)
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    r.advance(seconds + 1)
    assert r.fire() == 0, "a cancelled job's schedule fired"
    _deliveries(r)  # the SQS-delayed message still comes: the claim turns it away
    assert r.tally.skipped == (0 if isinstance(delay, timedelta) else n)
    r.check(ids, {"cancelled": n})
    return r.tally


def run_recurring(r: Rig, n: int) -> dict[str, TimeTally]:
    """n recurring schedules `cron(* * * * ? *)`: created, one run each, then each run again.
    Last, since they go on firing every minute."""
    from jobkit import recurring

    r.new_tally()
    r.meter.phase = "schedule"
    for i in range(n):
        r.producer.schedule(f"cron-{i:03d}", "cron(* * * * ? *)", r.jt, payload(i))
    created = r.tally
    now = datetime.now(UTC)
    names = [f"cron-{i:03d}" for i in range(n)]
    run_at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    r.new_tally()
    r.advance(max((run_at - now).total_seconds() - 1, 0))
    assert r.fire() == 0
    r.advance(1)
    assert r.fire() == n, "not every recurring schedule fired at the next minute"
    _deliveries(r)
    ids = {recurring.job_id(name, run_at) for name in names}  # <name>@<scheduled time>
    r.check(ids, {"succeeded": n}, recurring=n)
    one_run = r.tally
    # Scheduler delivers at least once: the same occurrence again, from a second firer
    # (which knows nothing of the first, as a repeated delivery would not).
    r.new_tally()
    assert r.fire(r.new_firer()) == n, "the second firer did not fire the same runs"
    _deliveries(r)
    assert r.tally.skipped == n
    r.check(ids, {"succeeded": n}, recurring=n)
    return {"cron_create": created, "cron_run": one_run, "cron_double": r.tally}


def measure(n: int) -> dict[str, TimeTally]:
    with rig() as r:
        tallies = {
            "now": run_now(r, n),
            "delay300": run_delay_short(r, n),
            "delay2h": run_delay_long(r, n),
            "cancel2h": run_cancel(r, n, LONG_DELAY),
            "cancel300": run_cancel(r, n, SHORT_DELAY),
        }
        tallies.update(run_recurring(r, n))
    return {s.key: tallies[s.key] for s in SCENARIOS}


# -- dollars -----------------------------------------------------------------------------------


def dollars(t: TimeTally, n: int, cpu_per_record: float | None) -> dict[str, float]:
    """US dollars per million jobs (runs, schedules), by service, from prices.json.

    As requests_per_job.cost_per_million, except that every AWS call the worker makes
    (DynamoDB or SQS: the ChangeMessageVisibility of an early delivery) is given the assumed
    in-region latency, and EventBridge Scheduler invocations are added."""
    p = prices()
    lam = p["lambda"]
    assumed = p["assumptions"]
    per = 1.0 / n
    worker_calls = sum(v for k, v in t.by_phase.items() if k.startswith("worker"))
    cpu_share = min(1.0, lam["memory_mb"] / lam["full_vcpu_at_mb"])
    duration_ms = 0.0
    if t.invocations:
        cpu_ms = (cpu_per_record or 0.0) * 1000 * t.records / cpu_share
        total = (
            cpu_ms
            + worker_calls * assumed["dynamodb_write_latency_ms"]
            + t.invocations * assumed["lambda_invoke_overhead_ms"]
        )
        duration_ms = math.ceil(total / t.invocations)
    gb_seconds = lam["memory_mb"] / 1024 * duration_ms / 1000
    ddb = p["dynamodb_on_demand"]
    return {
        "sqs": t.sqs_billed * per * p["sqs"]["standard_per_million_requests"],
        "dynamodb": t.write_units * per * ddb["per_million_write_request_units"]
        + t.read_units * per * ddb["per_million_read_request_units"],
        "scheduler": t.scheduler_invocations
        * per
        * p["eventbridge_scheduler"]["per_million_invocations"],
        "lambda": t.invocations
        * per
        * (lam["per_million_requests"] + 1e6 * gb_seconds * lam["per_gb_second_x86"]),
        "logs": t.log.bytes * per * p["cloudwatch_logs"]["per_gb_ingested"] / 1e3,
    }


def total(costs: dict[str, float]) -> float:
    return sum(costs.values())


# -- report ------------------------------------------------------------------------------------


class _Table:
    """The report's columns: one per scenario, 12 characters wide, labels 38."""

    width = 12

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def head(self, label: str) -> None:
        print(f"  {label:<38}" + "".join(f"{SHORT[k]:>{self.width}}" for k in self.keys))

    def line(self, label: str, values: list[float], fmt: str = ".2f") -> None:
        w = self.width
        cells = "".join("-".rjust(w) if v == 0 else f"{v:>{w}{fmt}}" for v in values)
        print(f"  {label:<38}{cells}")


def _report_requests(table: _Table, ts: list[TimeTally], n: int) -> None:
    line = table.line
    table.head("requests per job by API")
    for op in sorted({op for t in ts for op in t.calls}):
        line(f"  {op}", [t.calls[op] / n for t in ts])
    for op in sorted({op for t in ts for op in t.by_scheduler}):
        line(f"  {op} (by Scheduler, not billed)", [t.by_scheduler[op] / n for t in ts])
    line("  Scheduler invocations (billed)", [t.scheduler_invocations / n for t in ts])
    for service in ("dynamodb", "sqs", "scheduler"):
        line(f"{service} requests / job", [t.requests_by_service()[service] / n for t in ts])
    line("all requests / job (+ invocations)", [_requests(t) / n for t in ts])
    line("DynamoDB write requests / job", [t.item_writes / n for t in ts])
    line("  table write units / job", [t.table_wu / n for t in ts])
    for index in capacity.indexes_of(jobs_table()):
        line(f"  index {index.name} WU / job", [t.index_wu[index.name] / n for t in ts])
    line("write units / job (all)", [t.write_units / n for t in ts])
    line("read units / job", [t.read_units / n for t in ts])
    line("SQS billed requests / job", [t.sqs_billed / n for t in ts])
    line("Lambda invocations / job", [t.invocations / n for t in ts])
    line("deliveries deferred / job", [t.deferred / n for t in ts])
    line("deliveries skipped by the claim / job", [t.skipped / n for t in ts])
    line("log bytes / job (worker stdout)", [t.log.bytes / n for t in ts], ".0f")
    print("  API calls per job by phase")
    for phase in sorted({k for t in ts for k in t.by_phase}):
        line(f"    {phase}", [t.by_phase[phase] / n for t in ts])


def _report_dollars(
    table: _Table, tallies: dict[str, TimeTally], costs: dict[str, dict[str, float]]
) -> None:
    keys, line = table.keys, table.line
    p = prices()
    print(f"\n  dollars per million jobs (prices.json, {p['region']}, {p['as_of']}):")
    table.head("")
    for part in ("sqs", "dynamodb", "scheduler", "lambda", "logs"):
        line(f"    {part}", [costs[k][part] for k in keys], ",.3f")
    line("    total", [total(costs[k]) for k in keys], ",.3f")
    base = tallies["now"]
    ts = [tallies[k] for k in keys]
    print("  ratio to the baseline (enqueue, run now):")
    line("    AWS requests (+ invocations)", [_requests(t) / _requests(base) for t in ts])
    line("    write units", [t.write_units / base.write_units for t in ts])
    line("    $ per million", [total(costs[k]) / total(costs["now"]) for k in keys])


def _results(
    tallies: dict[str, TimeTally], costs: dict[str, dict[str, float]], n: int
) -> list[Result]:
    now = total(costs["now"])
    results = [Result("time", "now (baseline): $ per million jobs", now, None, "$")]
    for s in SCENARIOS[1:]:
        results.append(
            Result(
                "time",
                f"{SHORT[s.key]}: requests per {s.per} (now {_requests(tallies['now']) / n:.2f})",
                _requests(tallies[s.key]) / n,
                None,
            )
        )
        if s.key != "cron_create":
            ratio = total(costs[s.key]) / now
            results.append(Result("time", f"{SHORT[s.key]}: $ per million / now", ratio, None, "x"))
    return results


def run(cpu_per_record: float | None = None, n: int = N_JOBS) -> list[Result]:
    print(
        f"\n== 4. Requests of delayed and recurring jobs ({n} jobs, runs or schedules per "
        f"scenario, batches of {BATCH_SIZE}, frozen clock) =="
    )
    tallies = measure(n)
    for s in SCENARIOS:
        print(f"  {SHORT[s.key]:>12}: {s.title} (per {s.per})")
    table = _Table(list(tallies))
    _report_requests(table, list(tallies.values()), n)
    costs = {k: dollars(t, n, cpu_per_record) for k, t in tallies.items()}
    _report_dollars(table, tallies, costs)
    if not cpu_per_record:
        print("    (Lambda duration without a CPU figure: run with the warm benchmark for it)")
    return _results(tallies, costs, n)


def _requests(t: TimeTally) -> int:
    """Billed requests: every counted AWS call plus Scheduler invocations."""
    return sum(t.calls.values()) + t.scheduler_invocations
