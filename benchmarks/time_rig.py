"""The stack of the time benchmark (time_requests.py), in moto on a frozen clock: producer,
worker, the event source mapping's poller, EventBridge Scheduler (the local stack's
`ScheduleFirer`), the request meter (meter.py) and the clock.

EventBridge Scheduler is the firer (window 0) on clients of its own: its ListSchedules /
GetSchedule look-ups are emulation and are not counted; the SendMessage of a fire is counted,
since SQS bills it to the queue's owner; the DeleteSchedule after a one-time schedule completed
is Scheduler's own request on AWS, listed apart and not billed; each fire is one billed
Scheduler invocation.
"""

from __future__ import annotations

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
    FakeContext,
    bench_job_type,
    esm_delete,
    esm_event,
    esm_receive,
    failed_ids,
    moto_stack,
    noop_processor,
    quiet_logs,
    template,
)
from benchmarks.meter import Meter, Tally

# A Monday 09:00:00 UTC, on a whole minute: the cron schedules' next run is 09:01:00.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SCHEDULE_GROUP = "jobkit-jobs"
RECURRING_GROUP = "jobkit-recurring"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/jobkit-scheduler"


@lru_cache(maxsize=1)
def jobs_table() -> dict[str, Any]:
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
                    "pages_from_stream": True,  # as deployed: the stream writes the pages
                }
            ),
        )
        self.worker.processor(self.jt)(noop_processor)

        table = jobs_table()
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
        queue_url = self.stack.queue_url
        context = FakeContext()
        handled = 0
        while self.visible():
            self.meter.phase = "poller"
            got = esm_receive(self.poller, queue_url)
            self.meter.phase = phase
            with quiet_logs(tally.log):
                response = self.worker.handle(esm_event(got, queue_url), context)  # type: ignore[arg-type]
            tally.invocations += 1
            tally.records += len(got)
            handled += len(got)
            self.meter.phase = "poller"
            esm_delete(self.poller, queue_url, got, failed_ids(response))
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


def log_counts(action: Callable[[], Any]) -> tuple[int, int]:
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
