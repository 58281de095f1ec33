"""AWS requests, capacity units and dollars of delayed, cancelled and recurring jobs.

N jobs (runs, schedules) per scenario, in one moto stack on a frozen clock (time-machine,
`tick=False`, a dev dependency): nothing sleeps, the clock jumps forward. The baseline is a job
enqueued to run now, measured the same way in the same run. Requests are counted as in
requests_per_job.py: botocore's `before-call` on jobkit's clients and on the poller that does
what Lambda's event source mapping does (ReceiveMessage 10 at a time, DeleteMessageBatch of the
records not reported as failures; both counted, per record); DynamoDB capacity from item images
(capacity.py). EventBridge Scheduler is the local stack's `ScheduleFirer` (window 0) on clients
of its own: its ListSchedules/GetSchedule look-ups are emulation and are not counted; the
SendMessage of a fire is counted, since SQS bills it to the queue's owner; the DeleteSchedule
after a one-time schedule completed is Scheduler's own request on AWS, listed apart and not
billed; each fire is one billed Scheduler invocation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from benchmarks import capacity
from benchmarks._common import (
    ACCOUNT,
    BATCH_SIZE,
    Result,
    bench_job_type,
    moto_stack,
    noop_processor,
    payload,
    prices,
    queue_arn,
    quiet_logs,
    sqs_record,
    template,
)
from benchmarks.requests_per_job import FakeContext, Meter, Tally

N_JOBS = 10  # one batch of 10 per scenario, as the ESM would take them
# A Monday 09:00:00 UTC, on a whole minute: the cron schedules' next run is 09:01:00.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SCHEDULE_GROUP = "jobkit-jobs"
RECURRING_GROUP = "jobkit-recurring"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/jobkit-scheduler"
LONG_DELAY = timedelta(hours=2)
SHORT_DELAY = 300


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    """template.yaml's JobsTable properties (parsing the template takes a third of a second)."""
    return template()["Resources"]["JobsTable"]["Properties"]  # type: ignore[no-any-return]


@dataclass
class TimeTally(Tally):
    """A Tally plus what Scheduler does: billed invocations, and its own requests."""

    scheduler_invocations: int = 0
    by_scheduler: Counter[str] = field(default_factory=Counter)  # Scheduler's own, not billed
    skipped: int = 0  # deliveries the claim turned away ("job skipped")
    deferred: int = 0  # early deliveries hidden again without an attempt

    def requests_by_service(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for op, count in self.calls.items():
            out[op.split(":", 1)[0]] += count
        return out


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


class Rig:
    """The stack: producer, worker, poller (the ESM), firer (Scheduler), meter, clock."""

    def __init__(self, stack: Any, traveller: Any) -> None:
        import boto3

        from jobkit import aws
        from jobkit.client import Jobkit
        from jobkit.worker import Worker

        self.stack = stack
        self.traveller = traveller
        self.jt = bench_job_type()
        admin = boto3.client("scheduler")  # uncounted: the stack's resources
        for group in (SCHEDULE_GROUP, RECURRING_GROUP):
            admin.create_schedule_group(Name=group)
        settings = stack.settings.model_copy(
            update={
                "schedule_group": SCHEDULE_GROUP,
                "recurring_group": RECURRING_GROUP,
                "scheduler_role_arn": ROLE_ARN,
            }
        )
        self.producer = Jobkit(settings)
        self.worker = Worker(
            "email",
            settings=settings.model_copy(
                update={
                    "worker_queue": "email",
                    "queue_url": stack.queue_url,
                    "dead_letter_queue_url": stack.dlq_url,
                }
            ),
        )
        self.worker.processor(self.jt)(noop_processor)

        table = _table()
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        self.meter = Meter(stack.settings.table, key_names, capacity.indexes_of(table))
        self.meter.tally = TimeTally()
        aws.dynamodb()
        aws.sqs()
        aws.client("scheduler")
        self.poller: Any = boto3.client("sqs")
        for client in [*aws._clients.values(), self.poller]:
            self.meter.hook(client)
        self._shared = dict(aws._clients)
        self.peek: Any = boto3.client("sqs")  # uncounted: the harness looks at the queue with it
        self.firer = self.new_firer()

    @property
    def tally(self) -> TimeTally:
        return self.meter.tally  # type: ignore[return-value]

    def new_tally(self) -> None:
        self.meter.tally = TimeTally()

    def new_firer(self) -> Any:
        """Scheduler: the local stack's firer, on clients of its own (see the module doc)."""
        import boto3

        from jobkit_tools.local.scheduler import ScheduleFirer

        firer = ScheduleFirer(None, window_seconds=0, now=lambda: datetime.now(UTC))
        firer.scheduler = boto3.client("scheduler")
        firer.sqs = boto3.client("sqs")
        firer.sqs.meta.events.register("before-parameter-build.sqs.SendMessage", self.meter._params)
        firer.sqs.meta.events.register("before-call.sqs.SendMessage", self._scheduler_send)
        firer.scheduler.meta.events.register(
            "before-call.scheduler.DeleteSchedule", self._scheduler_own
        )
        return firer

    def _scheduler_send(self, **_: Any) -> None:
        self.tally.calls["sqs:SendMessage (by Scheduler)"] += 1
        self.tally.by_phase[f"{self.meter.phase} sqs"] += 1

    def _scheduler_own(self, model: Any, **_: Any) -> None:
        self.tally.by_scheduler[f"scheduler:{model.name}"] += 1

    # -- time and the event source mapping -----------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.traveller.shift(timedelta(seconds=seconds))

    def fire(self, firer: Any = None) -> int:
        self.meter.phase = "scheduler"
        fired: int = (firer or self.firer).tick()
        self.tally.scheduler_invocations += fired
        return fired

    def visible(self) -> int:
        attributes = self.peek.get_queue_attributes(
            QueueUrl=self.stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def in_queue(self, url: str) -> int:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self.peek.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return sum(int(attributes["Attributes"].get(n, 0)) for n in names)

    def deliver(self, phase: str = "worker") -> int:
        """What the ESM does while messages are visible: ReceiveMessage (10), Worker.handle,
        DeleteMessageBatch of the records not in batchItemFailures. Returns records handled.

        Receives that would come back empty are not made (the harness peeks with an uncounted
        client): an ESM's idle long polls are a fixed cost per queue, not a cost per job."""
        tally = self.tally
        arn = queue_arn(self.stack.queue_url)
        context = FakeContext()
        handled = 0
        while self.visible():
            self.meter.phase = "poller"
            got = self.poller.receive_message(
                QueueUrl=self.stack.queue_url,
                MaxNumberOfMessages=BATCH_SIZE,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            event = {"Records": [sqs_record(m["Body"], arn, m["ReceiptHandle"]) for m in got]}
            for record, message in zip(event["Records"], got, strict=True):
                record["messageId"] = message["MessageId"]
            self.meter.phase = phase
            with quiet_logs(tally.log):
                response = self.worker.handle(event, context)  # type: ignore[arg-type]
            tally.invocations += 1
            tally.records += len(got)
            handled += len(got)
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            self.meter.phase = "poller"
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(got)
                if m["MessageId"] not in failed
            ]
            if entries:
                self.poller.delete_message_batch(QueueUrl=self.stack.queue_url, Entries=entries)
        return handled

    # -- checks (uncounted) ------------------------------------------------------------------

    def states(self, ids: set[str]) -> dict[str, int]:
        """The states of these jobs; each job missing from the log counts as 'missing'."""
        pages = self.meter._reader.get_paginator("scan").paginate(TableName="jobs")
        found = {
            item["pk"]["S"]: item["state"]["S"]
            for page in pages
            for item in page["Items"]
            if item["pk"]["S"] in ids
        }
        return dict(Counter(found.get(job_id, "missing") for job_id in ids))

    def schedules(self, group: str) -> int:
        pages = self.firer.scheduler.get_paginator("list_schedules").paginate(GroupName=group)
        return sum(len(page.get("Schedules", [])) for page in pages)

    def check(self, ids: set[str], states: dict[str, int], recurring: int = 0) -> None:
        from jobkit import aws

        found = self.states(ids)
        assert found == states, f"job states {found}, expected {states}"
        assert self.in_queue(self.stack.queue_url) == 0, "messages left in the queue"
        assert self.in_queue(self.stack.dlq_url) == 0, "dead letters"
        assert self.schedules(SCHEDULE_GROUP) == 0, "one-time schedules left"
        assert self.schedules(RECURRING_GROUP) == recurring, "recurring schedules"
        assert dict(aws._clients) == self._shared, "jobkit made a client after the hooks were set"


@contextmanager
def rig() -> Iterator[Rig]:
    import time_machine

    with time_machine.travel(START, tick=False) as traveller, moto_stack() as stack:
        yield Rig(stack, traveller)


def _log_counts(action: Callable[[], Any]) -> tuple[int, int]:
    """Run `action` and count the worker's 'job skipped' and 'job deferred' lines."""
    from jobkit.observability import logger

    seen = Counter[str]()
    handler = logger.registered_handler
    original = handler.emit

    def emit(record: Any) -> None:
        seen[str(record.msg)] += 1
        original(record)

    handler.emit = emit  # type: ignore[method-assign]
    try:
        action()
    finally:
        handler.emit = original  # type: ignore[method-assign]
    return seen["job skipped"], seen["job deferred"]


# -- the scenarios ---------------------------------------------------------------------------
# All of them run in one moto stack, one after the other, on a clock that only moves forward;
# each starts with an empty queue and a fresh tally, and checks its own jobs by id.


def _enqueue(r: Rig, n: int, delay: float | timedelta | None) -> set[str]:
    """n jobs with generated ids, as the baseline of requests_per_job.py."""
    r.new_tally()
    r.meter.phase = "enqueue"
    return {r.producer.enqueue(r.jt, payload(i), delay=delay).id for i in range(n)}


def _deliveries(r: Rig, phase: str = "worker") -> None:
    skipped, deferred = _log_counts(lambda: r.deliver(phase))
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


def run(cpu_per_record: float | None = None, n: int = N_JOBS) -> list[Result]:
    print(
        f"\n== 4. Requests of delayed and recurring jobs ({n} jobs, runs or schedules per "
        f"scenario, batches of {BATCH_SIZE}, frozen clock) =="
    )
    tallies = measure(n)
    keys = list(tallies)
    width = 12
    for s in SCENARIOS:
        print(f"  {SHORT[s.key]:>12}: {s.title} (per {s.per})")

    def head(label: str) -> None:
        print(f"  {label:<38}" + "".join(f"{SHORT[k]:>{width}}" for k in keys))

    def line(label: str, values: list[float], fmt: str = ".2f") -> None:
        cells = "".join("-".rjust(width) if v == 0 else f"{v:>{width}{fmt}}" for v in values)
        print(f"  {label:<38}{cells}")

    ts = [tallies[k] for k in keys]
    head("requests per job by API")
    ops = sorted({op for t in ts for op in t.calls})
    for op in ops:
        line(f"  {op}", [t.calls[op] / n for t in ts])
    own = sorted({op for t in ts for op in t.by_scheduler})
    for op in own:
        line(f"  {op} (by Scheduler, not billed)", [t.by_scheduler[op] / n for t in ts])
    line("  Scheduler invocations (billed)", [t.scheduler_invocations / n for t in ts])
    for service in ("dynamodb", "sqs", "scheduler"):
        line(f"{service} requests / job", [t.requests_by_service()[service] / n for t in ts])
    line("all requests / job (+ invocations)", [_requests(t) / n for t in ts])
    line("DynamoDB write requests / job", [t.item_writes / n for t in ts])
    line("  table write units / job", [t.table_wu / n for t in ts])
    indexes = capacity.indexes_of(_table())
    for index in indexes:
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

    p = prices()
    print(f"\n  dollars per million jobs (prices.json, {p['region']}, {p['as_of']}):")
    costs = {k: dollars(t, n, cpu_per_record) for k, t in tallies.items()}
    head("")
    for part in ("sqs", "dynamodb", "scheduler", "lambda", "logs"):
        line(f"    {part}", [costs[k][part] for k in keys], ",.3f")
    line("    total", [total(costs[k]) for k in keys], ",.3f")
    base = tallies["now"]
    print("  ratio to the baseline (enqueue, run now):")
    line("    AWS requests (+ invocations)", [_requests(t) / _requests(base) for t in ts])
    line("    write units", [t.write_units / base.write_units for t in ts])
    line("    $ per million", [total(costs[k]) / total(costs["now"]) for k in keys])
    if not cpu_per_record:
        print("    (Lambda duration without a CPU figure: run with the warm benchmark for it)")

    results = [Result("time", "now (baseline): $ per million jobs", total(costs["now"]), None, "$")]
    for s in SCENARIOS[1:]:
        t = tallies[s.key]
        results.append(
            Result(
                "time",
                f"{SHORT[s.key]}: requests per {s.per} (now {_requests(base) / n:.2f})",
                _requests(t) / n,
                None,
            )
        )
        if s.key != "cron_create":
            results.append(
                Result(
                    "time",
                    f"{SHORT[s.key]}: $ per million / now",
                    total(costs[s.key]) / total(costs["now"]),
                    None,
                    "x",
                )
            )
    return results


def _requests(t: TimeTally) -> int:
    """Billed requests: every counted AWS call plus Scheduler invocations."""
    return sum(t.calls.values()) + t.scheduler_invocations
