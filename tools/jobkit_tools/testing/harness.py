"""The harness: moto, a virtual clock and inline workers (see the package's docstring)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobkit import aws
from jobkit.jobs import registered_job_types
from jobkit.models import Job
from jobkit.settings import Settings, get_settings
from jobkit_apps.applications import get_applications_settings
from jobkit_tools.testing.batches import Hosted, delete, hidden_count, invoke, receive
from jobkit_tools.testing.clock import DEFAULT_START, Wakes, aware, seconds
from jobkit_tools.testing.environment import Environment, isolate_aws, new_session, own_session
from jobkit_tools.testing.models import DeadLetter, HarnessError, SentEmail
from jobkit_tools.testing.reading import read_dead_letters, read_sent_emails
from jobkit_tools.testing.stack import create_queue, create_tables, queue_arn

if TYPE_CHECKING:
    from time_machine import Traveller, travel

    from jobkit.client import Jobkit
    from jobkit.worker import Worker
    from jobkit_tools.local.scheduler import ScheduleFirer

# Batches handled at one instant before the harness calls it a loop (a message hidden for 0 s
# again and again, a processor that enqueues itself with no delay, ...).
_MAX_ROUNDS = 1_000


class Harness:
    """moto, a virtual clock and inline workers; see the package's docstring.

    Use it as a context manager (or `start()`/`stop()`), or through the `jobkit_harness`
    fixture. `start` is the virtual clock's first moment (timezone-aware).
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        region: str = "us-east-1",
        queues: Iterable[str] = (),
        table: str = "jobkit-jobs",
        applications_table: str = "jobkit-applications",
        schedule_group: str = "jobkit-jobs",
        visibility_timeout: int = 180,
        max_receive_count: int = 10,
    ) -> None:
        self.start_time = aware(start or DEFAULT_START)
        self.region = region
        self.table = table
        self.applications_table = applications_table
        self.pages_table = f"{table}-pages"
        self.schedule_group = schedule_group
        # Template.yaml's queues: 6 x a 30 s function timeout, and a crash-loop net of 10.
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.invocations = 0  # worker.handle calls so far
        self._wanted_queues = list(queues)
        self._queues: dict[str, str] = {}
        self._dead_letter_queues: dict[str, str] = {}
        self._hosted: dict[str, Hosted] = {}  # by queue name
        self._wakes = Wakes(lambda: self.visibility_timeout)
        self._env = Environment()
        self._settings: Settings | None = None
        self._client: Jobkit | None = None
        self._travel: travel | None = None
        self._traveller: Traveller | None = None
        self._mock: Any = None
        self._sqs: Any = None  # the harness's own client: its calls are not hints
        self._firer: ScheduleFirer | None = None
        self._default_session: tuple[Any] | None = None  # the one to put back
        self._account = ""

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Harness:
        try:
            import boto3
            import time_machine
            from moto import mock_aws

            from jobkit_tools.local.scheduler import ScheduleFirer
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise HarnessError(
                f"jobkit_tools.testing needs moto and time-machine: pip install 'jobkit[testing]' "
                f"({error})"
            ) from error
        if self._mock is not None:
            raise HarnessError("this harness is already started")
        try:
            self._isolate_aws()
            self._travel = time_machine.travel(self.start_time, tick=False)
            self._traveller = self._travel.start()
            self._mock = mock_aws()
            self._mock.start()
            # `boto3.client(...)` in the test: a fresh default session, watched.
            self._default_session = (boto3.DEFAULT_SESSION,)
            boto3.DEFAULT_SESSION = default = new_session(self.region)
            self._wakes.hook(default.events)
            own = own_session(self.region)
            self._sqs = own.client("sqs")
            self._account = own.client("sts").get_caller_identity()["Account"]
            self._create_stack()
            self._firer = ScheduleFirer(None, window_seconds=0, now=lambda: datetime.now(UTC))
            self._watch_shared_clients()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        import boto3

        for hosted in self._hosted.values():
            hosted.worker.use_settings(hosted.previous)
        self._hosted.clear()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self._travel is not None:
            self._travel.stop()
            self._travel = self._traveller = None
        if self._default_session is not None:
            boto3.DEFAULT_SESSION = self._default_session[0]
            self._default_session = None
        self._env.restore()
        self._forget_clients()
        self._sqs = self._firer = self._settings = self._client = None
        self._wakes.forget()
        self._queues.clear()
        self._dead_letter_queues.clear()

    def _isolate_aws(self) -> None:
        isolate_aws(self._env, self.region)
        self._forget_clients()

    def _forget_clients(self) -> None:
        """jobkit caches clients, settings and its default producer per process."""
        from jobkit import client as client_module

        aws.reset_clients()
        get_settings.cache_clear()
        get_applications_settings.cache_clear()
        client_module._default = None

    # -- the stack in moto -----------------------------------------------------------------

    def _create_stack(self) -> None:
        create_tables(self.table, self.applications_table, self.pages_table)
        scheduler = aws.client("scheduler")
        for group in (self.schedule_group, self.recurring_group):
            scheduler.create_schedule_group(Name=group)
        names = {t.queue for t in registered_job_types().values()} | set(self._wanted_queues)
        for name in sorted(names):
            self._create_queue(name)
        self._configure()

    def _create_queue(self, name: str) -> None:
        self._queues[name], self._dead_letter_queues[name] = create_queue(
            self._sqs, name, self.visibility_timeout, self.max_receive_count
        )

    def _configure(self) -> None:
        """Settings for producers (`client`, `jobkit.enqueue`, ...) and for each worker."""
        values: dict[str, Any] = {
            "table": self.table,
            "pages_table": self.pages_table,
            "queues": dict(self._queues),
            "dead_letter_queues": dict(self._dead_letter_queues),
            "schedule_group": self.schedule_group,
            "recurring_group": self.recurring_group,
            "scheduler_role_arn": f"arn:aws:iam::{self._account}:role/jobkit-scheduler",
            # Nothing here reads the job log's stream: each worker batch writes its page.
            "pages_from_stream": False,
        }
        self._settings = Settings(**values)
        for name, value in {**values, "applications_table": self.applications_table}.items():
            text = value if isinstance(value, str) else json.dumps(value)
            self._env.set(f"JOBKIT_{name.upper()}", text)
        self._client = None
        get_settings.cache_clear()
        get_applications_settings.cache_clear()
        from jobkit import client as client_module

        client_module._default = None
        for queue, hosted in self._hosted.items():
            hosted.worker.use_settings(self._worker_settings(queue))

    def _worker_settings(self, queue: str) -> Settings:
        return self.settings.model_copy(
            update={
                "worker_queue": queue,
                "queue_url": self._queues[queue],
                "dead_letter_queue_url": self._dead_letter_queues[queue],
                "max_receive_count": self.max_receive_count,
            }
        )

    @property
    def recurring_group(self) -> str:
        return f"{self.schedule_group}-recurring"

    # -- what tests use --------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise HarnessError("the harness is not started")
        return self._settings

    @property
    def client(self) -> Jobkit:
        """A producer on the harness's stack (the same one `jobkit.enqueue` uses here)."""
        from jobkit.client import Jobkit

        if self._client is None:
            self._client = Jobkit(self.settings)
        return self._client

    @property
    def now(self) -> datetime:
        """The virtual clock (what `datetime.now`, `time.time` and moto see)."""
        return datetime.now(UTC)

    def queue_url(self, queue: str) -> str:
        return self._queues[queue]

    def dead_letter_queue_url(self, queue: str) -> str:
        return self._dead_letter_queues[queue]

    def register(
        self, worker: Worker, *, batch_size: int = 10, function_timeout: float = 900.0
    ) -> Worker:
        """Host `worker` (a `jobkit.worker.Worker`): it gets the settings of its queue (created
        if new) and runs every batch of that queue from now on. `batch_size` and
        `function_timeout` are the event source mapping's and the function's."""
        self._running()
        if not 1 <= batch_size <= 10:
            raise HarnessError("batch_size is 1-10, as for a standard SQS event source")
        queue = worker.queue
        hosted = self._hosted.get(queue)
        if hosted is not None:
            if hosted.worker is worker:
                return worker
            raise HarnessError(f"queue {queue!r} already has a worker (one function a queue)")
        if queue not in self._queues:
            self._create_queue(queue)
            self._configure()
        url = self._queues[queue]
        previous = worker.use_settings(self._worker_settings(queue))
        self._hosted[queue] = Hosted(
            worker, url, queue_arn(self._sqs, url), batch_size, function_timeout, previous
        )
        return worker

    def watch(self, client: Any) -> None:
        """Learn message delays and visibility timeouts from another boto3 SQS client too."""
        self._wakes.watch(client)

    def job(self, job_id: str) -> Job:
        """The job as the log has it now."""
        found = self.client.get_job(job_id)
        if found is None:
            raise HarnessError(f"no job {job_id!r} in the job log")
        return found

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The messages in `queue`'s dead-letter queue, oldest first; reading leaves them there
        (see `read_dead_letters`)."""
        self._running()
        return read_dead_letters(self._sqs, self._dead_letter_queues[queue])

    def sent_emails(self) -> list[SentEmail]:
        """Every email moto's SES accepted, oldest first."""
        self._running()
        return read_sent_emails(self._account, self.region)

    # -- time ------------------------------------------------------------------------------

    def advance(self, by: timedelta | float) -> None:
        """Let `by` (a timedelta or seconds) pass: run everything that falls due meanwhile, in
        order, and stop with the clock `by` later. `advance(0)` runs what is due now."""
        by_seconds = seconds(by)
        if by_seconds < 0:
            raise HarnessError("the clock only goes forward")
        self.run_until(self.now + timedelta(seconds=by_seconds))

    def run_until(self, moment: datetime) -> None:
        """Run everything due up to `moment` (timezone-aware) and stop the clock there.

        A message due at `moment` itself runs too: moto shows a message only strictly after its
        delay or visibility ends, so the harness runs it 1 ms later and then sets the clock
        back to `moment`."""
        self._running()
        target = aware(moment)
        if target < self.now:
            raise HarnessError(f"{target.isoformat()} is in the past (now {self.now.isoformat()})")
        while True:
            self._settle()
            wake = self._next_wake()
            if wake is None or wake[0] > target:
                break
            self._move_to(wake[1])
        if self.now < target:
            self._move_to(target)
            self._settle()
        elif self.now > target:  # by the 1 ms of a message due at the target
            self._move_to(target)

    def run_until_idle(self, limit: timedelta | float = timedelta(days=30)) -> datetime:
        """Run until nothing is left to happen: no message waiting to show, no schedule to
        fire. Returns the moment that was reached (the clock stays there). A recurring
        schedule never lets a stack go idle: `HarnessError` once `limit` has passed."""
        self._running()
        deadline = self.now + timedelta(seconds=seconds(limit))
        while True:
            self._settle()
            wake = self._next_wake()
            if wake is None:
                self._check_nothing_hidden()
                return self.now
            if wake[0] > deadline:
                raise HarnessError(
                    f"still busy after {limit}: the next event is at {wake[0].isoformat()} "
                    "(a recurring schedule? use advance or run_until)"
                )
            self._move_to(wake[1])

    def _move_to(self, moment: datetime) -> None:
        self._running()
        assert self._traveller is not None
        self._traveller.move_to(moment)

    def _running(self) -> None:
        if self._mock is None:
            raise HarnessError("the harness is not started (use it in a with block or the fixture)")

    def _next_wake(self) -> tuple[datetime, datetime] | None:
        """The first moment after now when a hosted queue may show a message or a schedule
        fires, and the moment to move the clock to for it (1 ms later for a message)."""
        assert self._firer is not None
        hosted = {h.queue_url for h in self._hosted.values()}
        return self._wakes.next(self.now, hosted, self._firer.next_fire_at())

    def _watch_shared_clients(self) -> None:
        """Hook jobkit's shared clients (made anew after `aws.reset_clients()`)."""
        self.watch(aws.sqs())

    def _check_nothing_hidden(self) -> None:
        for queue, hosted in self._hosted.items():
            hidden = hidden_count(self._sqs, hosted.queue_url)
            if hidden:
                raise HarnessError(
                    f"{hidden} message(s) on queue {queue!r} are hidden until a time the harness "
                    "was not told: were they sent or hidden through a client it does not watch? "
                    "(harness.watch(client))"
                )

    # -- running batches -------------------------------------------------------------------

    def _settle(self) -> None:
        """At the current instant: fire due schedules and run visible messages until neither
        happens any more."""
        assert self._firer is not None
        for _ in range(_MAX_ROUNDS):
            self._watch_shared_clients()
            fired = self._firer.tick()
            handled = sum(self._poll(hosted) for hosted in self._hosted.values())
            if not fired and not handled:
                return
        raise HarnessError(
            f"still busy at {self.now.isoformat()} after {_MAX_ROUNDS} rounds: a message "
            "handed back with no delay again and again, or jobs that enqueue jobs forever?"
        )

    def _poll(self, hosted: Hosted) -> int:
        """One receive and one invocation, as the event source mapping does; how many records
        the worker got."""
        messages = receive(self._sqs, hosted, self.visibility_timeout)
        if not messages:
            return 0
        self.invocations += 1
        # A record handed back without being hidden again, or a batch whose invocation
        # crashed, shows again when the visibility timeout of the receive ends.
        returns = self.now + timedelta(seconds=self.visibility_timeout)
        self._wakes.hidden.clear()
        try:
            failed = invoke(hosted, messages, self.region, self._account)
        except BaseException:
            self._wakes.add(hosted.queue_url, returns)
            raise
        if any(
            m["MessageId"] in failed and m["ReceiptHandle"] not in self._wakes.hidden
            for m in messages
        ):
            self._wakes.add(hosted.queue_url, returns)
        delete(self._sqs, hosted.queue_url, [m for m in messages if m["MessageId"] not in failed])
        return len(messages)
