"""A test harness for jobkit: jobs run inline against moto, on a virtual clock.

```python
def test_the_reminder_goes_out_a_day_later(jobkit_harness: Harness) -> None:
    jobkit_harness.register(reminders_worker)
    jobkit_harness.client.enqueue(REMIND, {...}, job_id="r1", delay=timedelta(days=1))
    jobkit_harness.advance(timedelta(days=1))
    assert jobkit_harness.job("r1").state == JobState.SUCCEEDED
```

`Harness` starts moto (`mock_aws`) and a frozen clock (time-machine, `tick=False`), creates the
job log (the schema of template.yaml's JobsTable), a queue and a dead-letter queue for every
queue of the declared job types and registered workers, and a Scheduler schedule group. Time
moves only when the test says so: `advance`, `run_until` and `run_until_idle` fire the
Scheduler schedules that fall due (with the local stack's `ScheduleFirer`), hand every visible
message to its queue's worker as Lambda's event source mapping would (a batch, an SQS event, a
Lambda context, the records not reported as failures deleted) and then jump straight to the
next moment something can happen: a message's `DelaySeconds` or visibility timeout running
out, or a schedule's next fire time. A seven-day sequence runs in milliseconds.

The harness learns those moments from botocore's public event system: a hook on
`provide-client-params` of `SendMessage(Batch)`, `ChangeMessageVisibility(Batch)` and
`ReceiveMessage` on jobkit's shared clients (`jobkit.aws`) and on boto3's default session
(`boto3.client(...)` in a test). A message sent or hidden through another client is invisible
to it: `watch(client)` adds that client.

Also a pytest plugin (entry point `pytest11`): the `jobkit_harness` fixture is a started
`Harness` at `DEFAULT_START`. Nothing in jobkit imports this module; moto and time-machine
(the `testing` extra) are imported when a harness starts, so the plugin loads without them.
"""

from __future__ import annotations

import email
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from jobkit import aws
from jobkit.applications import get_applications_settings
from jobkit.jobs import registered_job_types
from jobkit.models import Job
from jobkit.settings import Settings, get_settings

if TYPE_CHECKING:
    from time_machine import Traveller, travel

    from jobkit.client import Jobkit
    from jobkit.worker import Worker
    from jobkit_tools.local.scheduler import ScheduleFirer

# A Monday, 09:00 UTC: fixed, so that cron schedules and weekdays are the same in every run.
DEFAULT_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# The job log, as template.yaml's JobsTable declares it (tests/unit/test_testing_schema.py
# keeps the two the same).
JOB_LOG_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "type_shard", "AttributeType": "S"},
        {"AttributeName": "created_at", "AttributeType": "S"},
        {"AttributeName": "state_shard", "AttributeType": "S"},
        {"AttributeName": "updated_at", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by_type",
            "KeySchema": [
                {"AttributeName": "type_shard", "KeyType": "HASH"},
                {"AttributeName": "created_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
        {
            "IndexName": "by_state",
            "KeySchema": [
                {"AttributeName": "state_shard", "KeyType": "HASH"},
                {"AttributeName": "updated_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
    ],
}
JOB_LOG_TTL: dict[str, Any] = {"AttributeName": "expires_at", "Enabled": True}
# The reminders' documents records, as template.yaml's ApplicationsTable declares it.
APPLICATIONS_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "applicant_id", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "applicant_id", "KeyType": "HASH"}],
}

# Moto shows a message whose visibility or delay ends at t only strictly after t (as SQS may).
_MARGIN = timedelta(milliseconds=1)
# Batches handled at one instant before the harness calls it a loop (a message hidden for 0 s
# again and again, a processor that enqueues itself with no delay, ...).
_MAX_ROUNDS = 1_000
_TIMED_CALLS = (
    "SendMessage",
    "SendMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ReceiveMessage",
)
_ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")
# The AWS settings of a test machine that must not reach the harness's clients.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


class HarnessError(Exception):
    """The harness cannot do what was asked (time backwards, a loop that never lets time pass,
    messages hidden until a moment it was not told, a missing `testing` extra)."""


@dataclass(frozen=True)
class SentEmail:
    """One email moto's SES (v1 or v2) accepted."""

    source: str
    to: list[str]
    subject: str
    body: str  # the HTML part if there is one (moto keeps one part), or the raw message


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, with its message attributes."""

    body: str
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        """Why jobkit dead-lettered it (`jobkit-reason`)."""
        return self.attributes.get("jobkit-reason")

    @property
    def job_id(self) -> str | None:
        return self.attributes.get("jobkit-job-id")

    def envelope(self) -> dict[str, Any]:
        """The body as JSON (a jobkit envelope, with its `dead_letter` mark)."""
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class LambdaContext:
    """What Lambda hands a handler, as far as Powertools and the worker read it. The remaining
    time stays at the function's timeout: the clock does not move during a batch."""

    function_name: str
    invoked_function_arn: str
    timeout_seconds: float
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "jobkit-testing"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_seconds * 1000)


@dataclass
class _Hosted:
    worker: Worker
    queue_url: str
    queue_arn: str
    batch_size: int
    function_timeout: float
    previous: Settings | None


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise HarnessError("use a timezone-aware datetime (e.g. datetime(..., tzinfo=UTC))")
    return moment.astimezone(UTC)


_own_sessions: dict[str, Any] = {}


def _session(region: str, **credentials: str) -> Any:
    return aws.new_session(region_name=region, **credentials)


def _own_session(region: str) -> Any:
    """The harness's own session (its receives, deletes and peeks), kept across harnesses."""
    session = _own_sessions.get(region)
    if session is None:
        session = _own_sessions[region] = _session(
            region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
    return session


class _Environment:
    """Set and unset environment variables, and put them all back."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        self._saved.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


class Harness:
    """moto, a virtual clock and inline workers; see the module's docstring.

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
        self.start_time = _aware(start or DEFAULT_START)
        self.region = region
        self.table = table
        self.applications_table = applications_table
        self.schedule_group = schedule_group
        # Template.yaml's queues: 6 x a 30 s function timeout, and a crash-loop net of 10.
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.invocations = 0  # worker.handle calls so far
        self._wanted_queues = list(queues)
        self._queues: dict[str, str] = {}
        self._dead_letter_queues: dict[str, str] = {}
        self._hosted: dict[str, _Hosted] = {}  # by queue name
        self._wakes: list[tuple[str, datetime]] = []  # (queue URL, when it may show a message)
        self._watched: list[Any] = []
        self._hidden: set[str] = set()  # receipt handles hidden again during a batch
        self._env = _Environment()
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
                f"jobkit.testing needs moto and time-machine: pip install 'jobkit[testing]' "
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
            boto3.DEFAULT_SESSION = default = _session(self.region)
            for name in _TIMED_CALLS:
                default.events.register(f"provide-client-params.sqs.{name}", self._on_timed_call)
            own = _own_session(self.region)
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
        self._watched.clear()
        self._wakes.clear()
        self._queues.clear()
        self._dead_letter_queues.clear()

    def _isolate_aws(self) -> None:
        """Fake credentials, the harness's region, and no endpoint, profile or config file of
        the machine: every client must end in moto."""
        for name in list(os.environ):
            if name.startswith("AWS_ENDPOINT_URL") or name in _AWS_UNSET:
                self._env.set(name, None)
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", self.region),
            ("AWS_REGION", self.region),
            ("AWS_CONFIG_FILE", os.devnull),
            ("AWS_SHARED_CREDENTIALS_FILE", os.devnull),
        ):
            self._env.set(name, value)
        # Workers are configured one by one (`register`), never from the environment.
        for name in ("JOBKIT_WORKER_QUEUE", "JOBKIT_QUEUE_URL", "JOBKIT_DEAD_LETTER_QUEUE_URL"):
            self._env.set(name, None)
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
        ddb: Any = aws.dynamodb()  # the schema is plain dicts, shared with a unit test
        ddb.create_table(TableName=self.table, **JOB_LOG_TABLE)
        ddb.update_time_to_live(TableName=self.table, TimeToLiveSpecification=JOB_LOG_TTL)
        ddb.create_table(TableName=self.applications_table, **APPLICATIONS_TABLE)
        scheduler = aws.client("scheduler")
        for group in (self.schedule_group, self.recurring_group):
            scheduler.create_schedule_group(Name=group)
        names = {t.queue for t in registered_job_types().values()} | set(self._wanted_queues)
        for name in sorted(names):
            self._create_queue(name)
        self._configure()

    def _create_queue(self, name: str) -> None:
        sqs = self._sqs
        dlq_url = sqs.create_queue(
            QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
        )["QueueUrl"]
        dlq_arn = self._arn(dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receive_count)}
        self._queues[name] = sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        self._dead_letter_queues[name] = dlq_url

    def _arn(self, queue_url: str) -> str:
        attributes = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def _configure(self) -> None:
        """Settings for producers (`client`, `jobkit.enqueue`, ...) and for each worker."""
        values: dict[str, Any] = {
            "table": self.table,
            "queues": dict(self._queues),
            "dead_letter_queues": dict(self._dead_letter_queues),
            "schedule_group": self.schedule_group,
            "recurring_group": self.recurring_group,
            "scheduler_role_arn": f"arn:aws:iam::{self._account}:role/jobkit-scheduler",
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
        self._hosted[queue] = _Hosted(
            worker, url, self._arn(url), batch_size, function_timeout, previous
        )
        return worker

    def watch(self, client: Any) -> None:
        """Learn message delays and visibility timeouts from another boto3 SQS client too."""
        if any(client is known for known in self._watched):
            return
        for name in _TIMED_CALLS:
            client.meta.events.register(f"provide-client-params.sqs.{name}", self._on_timed_call)
        self._watched.append(client)

    def job(self, job_id: str) -> Job:
        """The job as the log has it now."""
        found = self.client.get_job(job_id)
        if found is None:
            raise HarnessError(f"no job {job_id!r} in the job log")
        return found

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The messages in `queue`'s dead-letter queue, oldest first. They stay there: read,
        then sent back in the same order with the same body and message attributes (under new
        message ids), since on a frozen clock moto would hide a message it has just shown."""
        self._running()
        url = self._dead_letter_queues[queue]
        found: list[dict[str, Any]] = []
        while True:
            got = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            found.extend(got)
        letters = [
            DeadLetter(
                m["Body"],
                {
                    name: str(value.get("StringValue", ""))
                    for name, value in m.get("MessageAttributes", {}).items()
                },
            )
            for m in found
        ]
        for start in range(0, len(found), 10):
            chunk = found[start : start + 10]
            self._sqs.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": m["Body"],
                        "MessageAttributes": {
                            name: {k: v for k, v in value.items() if k in _ATTRIBUTE_KEYS}
                            for name, value in m.get("MessageAttributes", {}).items()
                        },
                    }
                    for i, m in enumerate(chunk)
                ],
            )
            self._sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
        return letters

    def sent_emails(self) -> list[SentEmail]:
        """Every email moto's SES accepted, oldest first.

        Read from moto's SES backend (SES v2 shares v1's): AWS has no API that lists sent
        mail, so this one place reaches into moto rather than going through boto3.
        """
        from moto.ses.models import RawMessage, ses_backends

        self._running()

        sent: list[SentEmail] = []
        for message in ses_backends[self._account][self.region].sent_messages:
            if isinstance(message, RawMessage):
                parsed = email.message_from_string(message.raw_data)
                sent.append(
                    SentEmail(
                        message.source,
                        list(message.destinations),
                        str(parsed.get("Subject", "")),
                        message.raw_data,
                    )
                )
            else:
                destinations = message.destinations or {}
                sent.append(
                    SentEmail(
                        message.source,
                        list(destinations.get("ToAddresses", [])),
                        message.subject,
                        message.body,
                    )
                )
        return sent

    # -- time ------------------------------------------------------------------------------

    def advance(self, by: timedelta | float) -> None:
        """Let `by` (a timedelta or seconds) pass: run everything that falls due meanwhile, in
        order, and stop with the clock `by` later. `advance(0)` runs what is due now."""
        seconds = _seconds(by)
        if seconds < 0:
            raise HarnessError("the clock only goes forward")
        self.run_until(self.now + timedelta(seconds=seconds))

    def run_until(self, moment: datetime) -> None:
        """Run everything due up to `moment` (timezone-aware) and stop the clock there.

        A message due at `moment` itself runs too: moto shows a message only strictly after its
        delay or visibility ends, so the harness runs it 1 ms later and then sets the clock
        back to `moment`."""
        self._running()
        target = _aware(moment)
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
        deadline = self.now + timedelta(seconds=_seconds(limit))
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
        now = self.now
        hosted = {h.queue_url for h in self._hosted.values()}
        self._wakes = [(url, at) for url, at in self._wakes if at + _MARGIN > now]
        moments = [(at, at + _MARGIN) for url, at in self._wakes if url in hosted]
        assert self._firer is not None
        fire = self._firer.next_fire_at()
        if fire is not None and fire > now:
            moments.append((fire, fire))
        return min(moments, default=None)

    def _on_timed_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """botocore's `provide-client-params`: note when a message may show (returns None, so
        the call goes on unchanged)."""
        url = str(params.get("QueueUrl", ""))
        now = self.now
        name = model.name
        if name == "SendMessage":
            seconds = [params.get("DelaySeconds", 0)]
        elif name == "SendMessageBatch":
            seconds = [e.get("DelaySeconds", 0) for e in params.get("Entries", [])]
        elif name == "ChangeMessageVisibility":
            seconds = [params.get("VisibilityTimeout", 0)]
            self._hidden.add(str(params.get("ReceiptHandle")))
        elif name == "ChangeMessageVisibilityBatch":
            seconds = [e.get("VisibilityTimeout", 0) for e in params.get("Entries", [])]
            self._hidden.update(str(e.get("ReceiptHandle")) for e in params.get("Entries", []))
        else:  # ReceiveMessage
            seconds = [params.get("VisibilityTimeout", self.visibility_timeout)]
        # A delay of 0 shows a message at once; a visibility of 0 shows it just after now.
        lowest = 1 if name.startswith("SendMessage") else 0
        for value in {int(s or 0) for s in seconds}:
            if value >= lowest:
                self._wakes.append((url, now + timedelta(seconds=value)))

    def _watch_shared_clients(self) -> None:
        """Hook jobkit's shared clients (made anew after `aws.reset_clients()`)."""
        self.watch(aws.sqs())

    def _check_nothing_hidden(self) -> None:
        for queue, hosted in self._hosted.items():
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=hosted.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            hidden = sum(int(v) for v in attributes.values())
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

    def _poll(self, hosted: _Hosted) -> int:
        """One receive and one invocation, as the event source mapping does; how many records
        the worker got."""
        messages = self._sqs.receive_message(
            QueueUrl=hosted.queue_url,
            MaxNumberOfMessages=hosted.batch_size,
            VisibilityTimeout=self.visibility_timeout,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [self._record(hosted, m) for m in messages]}
        context = LambdaContext(
            function_name=f"{hosted.worker.queue}-function",
            invoked_function_arn=(
                f"arn:aws:lambda:{self.region}:{self._account}:function:"
                f"{hosted.worker.queue}-function"
            ),
            timeout_seconds=hosted.function_timeout,
        )
        self.invocations += 1
        # A record handed back without being hidden again, or a batch whose invocation
        # crashed, shows again when the visibility timeout of the receive ends.
        returns = (hosted.queue_url, self.now + timedelta(seconds=self.visibility_timeout))
        self._hidden.clear()
        try:
            response = hosted.worker.handle(event, context)  # type: ignore[arg-type]
        except BaseException:
            self._wakes.append(returns)
            raise
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        if any(
            m["MessageId"] in failed and m["ReceiptHandle"] not in self._hidden for m in messages
        ):
            self._wakes.append(returns)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=hosted.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        return len(messages)

    def _record(self, hosted: _Hosted, message: dict[str, Any]) -> dict[str, Any]:
        """One record of the SQS event Lambda builds (camelCase message attributes)."""
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        }
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": hosted.queue_arn,
            "awsRegion": self.region,
        }


@pytest.fixture
def jobkit_harness() -> Iterator[Harness]:
    """A started `Harness` (moto, a virtual clock at `DEFAULT_START`); stopped after the test."""
    with Harness() as harness:
        yield harness
