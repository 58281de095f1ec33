"""Syndication: AWS requests per delivery, and the delivery overhead against a bare urllib3 POST.

Part 1, requests per delivery. In moto (`mock_aws`), with the jobs table and a syndication queue
and DLQ shaped as template.yaml's, the RateLimitsTable, and the partners registered in SSM and
Secrets Manager as an operator registers them: N listings are published to P healthy partners
(HTTPS servers on 127.0.0.1 in a subprocess, a trustme CA, each verifying every signature), and
a poller does what Lambda's event source mapping does: ReceiveMessage of up to 10,
`Worker.handle` of the syndication worker, DeleteMessageBatch of the records not reported as
failures. Every request is counted with botocore's `before-call` on jobkit's clients; the
poller's receive and delete are split over the records of each batch (0.1 each per record in a
batch of 10) by job type. DynamoDB capacity comes from item images (capacity.py), for the job
log and the rate-limit buckets. A first listing warms the Powertools Parameters cache and is
reported on its own (the cold calls); the N listings after it run with the cache warm.

Part 2, delivery overhead. (a) a bare `urllib3.PoolManager(...).request("POST", ...)` of the same
body and headers to a loopback HTTPS partner that answers 200 at once (the same TLS setup,
connection reused), and (b) `Worker.handle` of batches of 10 deliveries to the same kind of
partner: admission (rate limit), claim, registry look-up (cached), signing, the POST, the outcome
write, against moto. Rounds interleaved, alternating which goes first; medians per delivery of
wall time, repeated; (b - a) split into moto's in-process DynamoDB, botocore's client side,
registry look-ups, signing and the rest.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import capacity
from benchmarks._common import (
    BATCH_SIZE,
    LAYER,
    ROOT,
    CountingSink,
    Result,
    fmt_ms,
    fmt_us,
    median,
    moto_stack,
    prices,
    queue_arn,
    quiet_logs,
    sqs_record,
    template,
)
from benchmarks.requests_per_job import _DDB_WRITES, Meter, Tally

FUNCTION = ROOT / "functions" / "syndication"
N_LISTINGS = 20
PARTNERS = ("alpha", "beta", "gamma")
PARTNERS_PATH = "/jobkit/bench/partners"
RATE_TABLE = "jobkit-bench-rate-limits"
SECRET = "whsec_YmVuY2htYXJrLXN5bmRpY2F0aW9uLXNlY3JldA=="
CACHE_SECONDS = 60  # SYNDICATION_CACHE_SECONDS' default
ROUNDS = 12  # batches of 10 deliveries per repetition (and as many bare rounds of 10 POSTs)
REPETITIONS = 3
WARMUP = 2
LISTING = {
    "title": "2BR near the park, sunny, renovated kitchen",
    "price": 2450,
    "currency": "USD",
    "url": "https://homes.example.com/l/000",
    "description": (
        "Bright two-bedroom apartment on the third floor, five minutes from the park and the "
        "subway. Renovated kitchen, hardwood floors, laundry in the building. Available from "
        "the first of next month; pets considered."
    ),
}


def _paths() -> None:
    if str(FUNCTION) not in sys.path:
        sys.path.insert(0, str(FUNCTION))


# -- loopback partners ---------------------------------------------------------------------------

_SERVER = r"""
import json, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, sys.argv[3])
chain, config = sys.argv[1], json.loads(sys.argv[2])
stats, lock = {}, threading.Lock()


def handler(name, secret):
    s = stats[name] = {"posts": 0, "verified": 0, "rejected": 0, "connections": 0}
    check = None
    if secret:
        from jobkit.webhooks import verify as check

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connection
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def setup(self):
            super().setup()
            with lock:
                s["connections"] += 1

        def do_GET(self):
            with lock:
                data = json.dumps(stats).encode()
            self.reply(200, data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = True
            if check is not None:
                try:
                    check(dict(self.headers.items()), body, [secret])
                except Exception:
                    ok = False
            with lock:
                s["posts"] += 1
                n = s["posts"]
                if check is not None:
                    s["verified" if ok else "rejected"] += 1
            if not ok:
                self.reply(401, b'{"error": "signature"}')
            else:
                self.reply(200, b'{"id": "%s-%d"}' % (name.encode(), n))

        def reply(self, status, data):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(chain)
ports = {}
for entry in config:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(entry["name"], entry.get("secret")))
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ports[entry["name"]] = httpd.server_address[1]
print(json.dumps(ports), flush=True)
sys.stdin.read()
"""


class Partners:
    """HTTPS partners on 127.0.0.1 in a subprocess (a partner is another machine: its work does
    not share this process's GIL). Names with a secret verify every request's signature (401
    otherwise); the others answer 200 at once. HTTP/1.1 keep-alive, so connections are reused."""

    def __init__(self, directory: Path, config: list[dict[str, str | None]]) -> None:
        import trustme

        ca = trustme.CA()
        self.ca_file = str(directory / "partners-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        chain = directory / "partner.pem"
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(chain)
        )
        config = [{"name": "control"}, *config]  # stats are read through a port of its own
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(chain), json.dumps(config), str(LAYER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.ports: dict[str, int] = json.loads(self._proc.stdout.readline())

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.ports[name]}/listings"

    def stats(self) -> dict[str, dict[str, int]]:
        import urllib3

        with urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=self.ca_file) as pool:
            response = pool.request("GET", f"https://127.0.0.1:{self.ports['control']}/stats")
            return json.loads(response.data)  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@contextmanager
def partners(config: list[dict[str, str | None]]) -> Iterator[Partners]:
    with tempfile.TemporaryDirectory() as directory:
        servers = Partners(Path(directory), config)
        try:
            yield servers
        finally:
            servers.close()


# -- the stack -----------------------------------------------------------------------------------


class LambdaContext:
    """The bits of a LambdaContext the worker reads; SyndicationFunction's 120 s timeout."""

    function_name = "SyndicationFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SyndicationFunction"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 119_000


@dataclass
class Rig:
    """The syndication worker wired to moto and the loopback partners."""

    settings: Any
    queue_url: str
    dlq_url: str
    client: Any
    worker: Any
    peek: Any  # an uncounted SQS client: the harness looks at the queue with it
    poller: Any  # the event source mapping's client (its calls are counted by hand)


def _register(name: str, url: str, *, rate: float, burst: int) -> None:
    """A partner as an operator registers one: its secret, then its parameter (uncounted)."""
    import boto3

    secret_name = f"jobkit/bench/partners/{name}"
    boto3.client("secretsmanager").create_secret(
        Name=secret_name, SecretString=json.dumps({"secrets": [SECRET]})
    )
    config = {
        "url": url,
        "secret_arn": secret_name,
        "rate_per_second": rate,
        "burst": burst,
        "timeout_seconds": 10,
        "enabled": True,
    }
    boto3.client("ssm").put_parameter(
        Name=f"{PARTNERS_PATH}/{name}", Value=json.dumps(config), Type="String", Overwrite=True
    )


@contextmanager
def syndication_stack(
    servers: Partners, names: list[str], rate: float, burst: int
) -> Iterator[Rig]:
    """moto with the job log, the syndication queue + DLQ and RateLimitsTable of template.yaml,
    the partners `names` registered, and the syndication worker's runtime pointed at them."""
    import boto3

    _paths()
    from jobkit import aws
    from jobkit import client as client_module
    from jobkit.client import Jobkit
    from syndication_worker.delivery import Sender
    from syndication_worker.partners import Registry
    from syndication_worker.processors import Runtime, use_runtime, worker
    from syndication_worker.ratelimit import RateLimiter

    resources = template()["Resources"]
    with moto_stack() as stack:
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="syndication-dlq")["QueueUrl"]
        queue = resources["SyndicationQueue"]["Properties"]
        redrive = {
            "deadLetterTargetArn": queue_arn(dlq_url),
            "maxReceiveCount": str(queue["RedrivePolicy"]["maxReceiveCount"]),
        }
        queue_url = sqs.create_queue(
            QueueName="syndication",
            Attributes={
                "VisibilityTimeout": str(queue["VisibilityTimeout"]),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        rate_table = resources["RateLimitsTable"]["Properties"]
        boto3.client("dynamodb").create_table(
            TableName=RATE_TABLE,
            AttributeDefinitions=rate_table["AttributeDefinitions"],
            KeySchema=rate_table["KeySchema"],
            BillingMode=rate_table["BillingMode"],
        )
        for name in names:
            _register(name, servers.url(name), rate=rate, burst=burst)
        settings = stack.settings.model_copy(
            update={
                "queues": {**stack.settings.queues, "syndication": queue_url},
                "dead_letter_queues": {**stack.settings.dead_letter_queues, "syndication": dlq_url},
                "worker_queue": "syndication",
                "queue_url": queue_url,
                "dead_letter_queue_url": dlq_url,
            }
        )
        client = Jobkit(settings)
        previous_default, client_module._default = client_module._default, client
        previous_settings = worker.use_settings(settings)
        previous_runtime = use_runtime(
            Runtime(
                Registry(PARTNERS_PATH, CACHE_SECONDS),
                RateLimiter(RATE_TABLE),
                Sender(servers.ca_file, allow_private_networks=True),
            )
        )
        # Every client jobkit will use, made now (so hooks can be set on them before any call).
        for service in ("dynamodb", "sqs", "ssm", "secretsmanager"):
            aws.client(service)
        try:
            yield Rig(
                settings,
                queue_url,
                dlq_url,
                client,
                worker,
                boto3.client("sqs"),
                boto3.client("sqs"),
            )
        finally:
            use_runtime(previous_runtime)
            worker.use_settings(previous_settings)
            client_module._default = previous_default


def _visible(rig: Rig) -> int:
    attributes = rig.peek.get_queue_attributes(
        QueueUrl=rig.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _in_queue(rig: Rig, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = rig.peek.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(n, 0)) for n in names)


def _receive(rig: Rig) -> list[dict[str, Any]]:
    return rig.poller.receive_message(  # type: ignore[no-any-return]
        QueueUrl=rig.queue_url,
        MaxNumberOfMessages=BATCH_SIZE,
        WaitTimeSeconds=0,
        AttributeNames=["All"],
    ).get("Messages", [])


def _event(rig: Rig, messages: list[dict[str, Any]]) -> dict[str, Any]:
    arn = queue_arn(rig.queue_url)
    records = [sqs_record(m["Body"], arn, m["ReceiptHandle"]) for m in messages]
    for record, message in zip(records, messages, strict=True):
        record["messageId"] = message["MessageId"]
    return {"Records": records}


def _kind(body: str) -> str:
    job_type = json.loads(body).get("type", "")
    return "deliver" if job_type == "syndication.deliver" else "publish"


# -- part 1: requests per delivery ------------------------------------------------------------


@dataclass
class SynTally(Tally):
    """A Tally (requests_per_job.py) plus the rate-limit buckets, fractional ESM shares and what
    the partners saw."""

    rate_writes: int = 0
    rate_wu: int = 0
    rate_ru: float = 0.0
    shared_log: CountingSink = field(default_factory=CountingSink)
    invocations_share: float = 0.0
    esm_billed: float = 0.0

    def count(self, prefix: str) -> float:
        return sum(n for k, n in self.calls.items() if k.startswith(prefix))


class _RateCall(threading.local):
    """What one call on the RateLimitsTable carries to its answer, per thread."""

    def __init__(self) -> None:
        self.before: tuple[dict[str, Any], dict[str, Any] | None] | None = None
        self.read = False


class SyndicationMeter(Meter):
    """Meter of requests_per_job.py, plus the RateLimitsTable: its conditional writes (1 unit
    each, failed or not: items far below 1 KB, no index) and its consistent reads."""

    def __init__(self, *args: Any, rate_table: str) -> None:
        super().__init__(*args)
        self.rate_table = rate_table
        self._rate = _RateCall()

    def _rate_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        found = self._reader.get_item(TableName=self.rate_table, Key=key, ConsistentRead=True)
        return found.get("Item")  # type: ignore[no-any-return]

    def _params(self, params: dict[str, Any], model: Any, event_name: str, **kw: Any) -> None:
        if event_name.split(".")[1] == "dynamodb" and params.get("TableName") == self.rate_table:
            if model.name in _DDB_WRITES:
                self._rate.before = (params["Key"], self._rate_item(params["Key"]))
                with self._lock:
                    self.tally.rate_writes += 1  # type: ignore[attr-defined]
            elif model.name == "GetItem":
                self._rate.read = True
            return
        super()._params(params=params, model=model, event_name=event_name, **kw)

    def _after(self, model: Any, parsed: dict[str, Any], event_name: str, **kw: Any) -> None:
        tally: SynTally = self.tally  # type: ignore[assignment]
        if self._rate.before is not None and model.name in _DDB_WRITES:
            key, before = self._rate.before
            self._rate.before = None
            units = capacity.table_write_units(before, self._rate_item(key))
            with self._lock:
                tally.rate_wu += units
            return
        if self._rate.read and model.name == "GetItem":
            self._rate.read = False
            units = capacity.read_units(parsed.get("Item"), consistent=True)
            with self._lock:
                tally.rate_ru += units
            return
        super()._after(model=model, parsed=parsed, event_name=event_name, **kw)

    def _forget(self, **kw: Any) -> None:
        self._rate.before = None
        self._rate.read = False
        super()._forget(**kw)


class RoutingSink:
    """stdout of the worker: each record's log lines to its job type's tally; what is written
    between records (the batch's EMF metrics) to a shared sink, split by records later."""

    def __init__(self) -> None:
        self.target: CountingSink | None = None
        self.shared = CountingSink()

    def write(self, text: str) -> int:
        return (self.target or self.shared).write(text)

    def flush(self) -> None:
        pass


@dataclass
class Requests:
    publish: SynTally  # the publish jobs: producer, worker, ESM shares (per listing)
    deliver: SynTally  # the delivery jobs: worker, ESM shares (per delivery)
    cold: Counter[str]  # SSM / Secrets Manager calls while the cache was cold (first listing)
    listings: int
    deliveries: int
    posts: int
    verified: int
    connections: int
    item_bytes: int  # a delivery job's item in the log, after success


def _drain(rig: Rig, meter: SyndicationMeter, tallies: dict[str, SynTally]) -> None:
    """What the ESM does while messages are visible; receives that would be empty are not made
    (an idle ESM's long polls are a cost per queue, not per job)."""
    sink = RoutingSink()
    worker = rig.worker
    original = worker._record

    def record(record: Any, lambda_context: Any = None) -> None:
        kind = _kind(record.body)
        meter.tally = tallies[kind]
        sink.target = tallies[kind].log
        try:
            original(record, lambda_context)
        finally:
            sink.target = None

    worker._record = record
    context = LambdaContext()
    try:
        while _visible(rig):
            messages = _receive(rig)
            kinds = Counter(_kind(m["Body"]) for m in messages)
            for kind, k in kinds.items():
                share = k / len(messages)
                tallies[kind].calls["sqs:ReceiveMessage"] += share  # type: ignore[assignment]
                tallies[kind].esm_billed += share  # each receive is one request (< 64 KB)
                tallies[kind].invocations_share += share
                tallies[kind].records += k
            meter.phase = "worker"
            before = sink.shared.bytes
            with quiet_logs(sink):  # type: ignore[arg-type]
                response = worker.handle(_event(rig, messages), context)
            shared = sink.shared.bytes - before
            for kind, k in kinds.items():
                tallies[kind].shared_log.bytes += round(shared * k / len(messages))
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                rig.poller.delete_message_batch(
                    QueueUrl=rig.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
                for kind, k in Counter(_kind(m["Body"]) for m in done).items():
                    share = k / len(done)
                    tallies[kind].calls["sqs:DeleteMessageBatch"] += share  # type: ignore[assignment]
                    tallies[kind].esm_billed += share
    finally:
        del worker._record  # the class's method again


def measure_requests(n: int = N_LISTINGS) -> Requests:
    from jobkit import aws
    from jobkit.catalog.syndication import delivery_id, publish_id, publish_listing

    table = template()["Resources"]["JobsTable"]["Properties"]
    config: list[dict[str, str | None]] = [{"name": p, "secret": SECRET} for p in PARTNERS]
    with (
        partners(config) as servers,
        syndication_stack(servers, list(PARTNERS), rate=50, burst=50) as rig,
    ):
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        meter = SyndicationMeter(
            rig.settings.table, key_names, capacity.indexes_of(table), rate_table=RATE_TABLE
        )
        clients = dict(aws._clients)
        for c in clients.values():
            meter.hook(c)

        def run(listings: range) -> dict[str, SynTally]:
            tallies = {"publish": SynTally(), "deliver": SynTally()}
            meter.tally = tallies["publish"]
            meter.phase = "producer"
            for i in listings:
                listing = {**LISTING, "url": f"https://homes.example.com/l/{i:03d}"}
                publish_listing(f"L-{i:03d}", 1, listing, client=rig.client)
            _drain(rig, meter, tallies)
            return tallies

        cold = run(range(1))  # the first listing: Powertools' caches are empty
        warm = run(range(1, n + 1))
        # checks (uncounted)
        assert dict(aws._clients) == clients, "jobkit made a client after the hooks were set"
        assert _in_queue(rig, rig.queue_url) == 0 and _in_queue(rig, rig.dlq_url) == 0
        reader = meter._reader
        states: Counter[str] = Counter()
        for i in range(n + 1):
            ids = [publish_id(f"L-{i:03d}", 1)]
            ids += [delivery_id(f"L-{i:03d}", 1, p) for p in PARTNERS]
            for job_id in ids:
                item = reader.get_item(TableName="jobs", Key={"pk": {"S": job_id}})["Item"]
                states[item["state"]["S"]] += 1
        assert states == {"succeeded": (n + 1) * (1 + len(PARTNERS))}, states
        last = reader.get_item(
            TableName="jobs", Key={"pk": {"S": delivery_id(f"L-{n:03d}", 1, PARTNERS[0])}}
        )["Item"]
        seen = servers.stats()
    deliveries = n * len(PARTNERS)
    posts = sum(seen[p]["posts"] for p in PARTNERS)
    assert posts == deliveries + len(PARTNERS), f"{posts} POSTs for {deliveries} deliveries"
    cold_calls = Counter(
        {
            op: int(t.calls[op])
            for t in cold.values()
            for op in t.calls
            if op.startswith(("ssm:", "secrets-manager:"))
        }
    )
    return Requests(
        warm["publish"],
        warm["deliver"],
        cold_calls,
        n,
        deliveries,
        posts,
        sum(seen[p]["verified"] for p in PARTNERS),
        sum(seen[p]["connections"] for p in PARTNERS),
        capacity.item_size(last),
    )


# -- part 2: delivery overhead -----------------------------------------------------------------


@dataclass
class Clocks:
    """Wall time inside botocore calls, moto's handler, signing, registry look-ups, the POST."""

    api: float = 0.0
    moto: float = 0.0
    sign: float = 0.0
    registry: float = 0.0
    post: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    _depth: int = 0

    def reset(self) -> None:
        self.api = self.moto = self.sign = self.registry = self.post = 0.0


@contextmanager
def clocks(sender: Any) -> Iterator[Clocks]:
    """perf_counter around botocore's `_make_api_call` (the whole AWS call), moto's request
    handler (inside it), `sign` as the Sender calls it, the Registry's look-ups, and the
    Sender's pool request (the POST)."""
    from botocore.client import BaseClient
    from moto.core.botocore_stubber import BotocoreStubber

    from syndication_worker import delivery
    from syndication_worker.partners import Registry

    c = Clocks()
    clock = time.perf_counter
    saved: list[tuple[Any, str, Any]] = []

    def timed(owner: Any, name: str, slot: str, count: bool = False) -> None:
        original = getattr(owner, name)
        saved.append((owner, name, original if name in vars(owner) else None))
        if isinstance(owner, type):

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                if count:
                    c.calls[f"{self.meta.service_model.service_id}:{args[0]}"] += 1
                start = clock()
                try:
                    return original(self, *args, **kwargs)
                finally:
                    setattr(c, slot, getattr(c, slot) + clock() - start)

            setattr(owner, name, method)
        else:

            def function(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    return original(*args, **kwargs)
                finally:
                    setattr(c, slot, getattr(c, slot) + clock() - start)

            setattr(owner, name, function)

    timed(BaseClient, "_make_api_call", "api", count=True)
    timed(BotocoreStubber, "process_request", "moto")
    timed(delivery, "sign", "sign")
    timed(Registry, "load", "registry")
    timed(Registry, "secrets", "registry")
    timed(sender._pool, "request", "post")
    try:
        yield c
    finally:
        for owner, name, original in reversed(saved):
            if original is None:
                delattr(owner, name)  # an instance's own attribute: the class's method again
            else:
                setattr(owner, name, original)


@dataclass
class Overhead:
    bare: list[float]  # per repetition: median per delivery, seconds
    worker: list[float]
    post_in_worker: list[float]
    moto: list[float]
    botocore: list[float]
    sign: list[float]
    registry: list[float]
    calls_per_delivery: dict[str, float]
    connections: dict[str, int]  # TLS connections the partner saw, per side
    rounds: int


def measure_overhead(rounds: int = ROUNDS, repetitions: int = REPETITIONS) -> Overhead:
    import urllib3

    from jobkit.catalog.syndication import DELIVER, DeliverPayload, delivery_id
    from jobkit.client import EnqueueRequest
    from jobkit.webhooks import sign
    from syndication_worker.processors import runtime

    body_of = {"type": "listing.published", "listing_id": "L-0", "version": "1", "listing": LISTING}
    config: list[dict[str, str | None]] = [{"name": "bare"}, {"name": "timed"}]
    with (
        partners(config) as servers,
        syndication_stack(servers, ["timed"], rate=10_000, burst=100_000) as rig,
    ):
        rt = runtime()
        bare_pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=servers.ca_file, retries=False, maxsize=4
        )
        bare_url = servers.url("bare")
        # The same bytes on the wire as a delivery: body and headers, signed once here.
        body = json.dumps(body_of, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "jobkit-syndication/1",
            "Idempotency-Key": delivery_id("L-0", "1", "timed"),
            **sign(delivery_id("L-0", "1", "timed"), body, [SECRET]),
        }
        timeout = urllib3.Timeout(total=10)

        def bare() -> None:
            for _ in range(BATCH_SIZE):
                response = bare_pool.request(
                    "POST",
                    bare_url,
                    body=body,
                    headers=headers,
                    timeout=timeout,
                    redirect=False,
                    retries=False,
                )
                assert response.status == 200, response.status

        counter = [0]

        def batch() -> dict[str, Any]:
            """10 deliveries in the log and the queue, received as the ESM would (untimed)."""
            requests = []
            for _ in range(BATCH_SIZE):
                counter[0] += 1
                listing_id = f"T-{counter[0]:05d}"
                requests.append(
                    EnqueueRequest(
                        DELIVER,
                        DeliverPayload(
                            listing_id=listing_id,
                            version="1",
                            platform="timed",
                            body={**body_of, "listing_id": listing_id},
                        ),
                        job_id=delivery_id(listing_id, "1", "timed"),
                    )
                )
            assert not rig.client.enqueue_many(requests).failed
            messages: list[dict[str, Any]] = []
            while len(messages) < BATCH_SIZE:
                messages += _receive(rig)
            return {"messages": messages, "event": _event(rig, messages)}

        context = LambdaContext()
        clock = time.perf_counter
        out = Overhead([], [], [], [], [], [], [], {}, {}, rounds)
        calls: Counter[str] = Counter()
        timed_deliveries = 0
        stats_before = servers.stats()
        with quiet_logs(), clocks(rt.sender) as c:
            for rep in range(repetitions):
                samples: dict[str, list[float]] = {
                    k: [] for k in ("bare", "worker", "post", "moto", "botocore", "sign", "reg")
                }
                for n in range(rounds + (WARMUP if rep == 0 else 0)):
                    prepared = batch()
                    order = ["worker", "bare"] if n % 2 else ["bare", "worker"]
                    for side in order:
                        gc.collect()
                        if side == "bare":
                            start = clock()
                            bare()
                            spent = clock() - start
                        else:
                            c.reset()
                            c.calls.clear()
                            start = clock()
                            response = rig.worker.handle(prepared["event"], context)
                            spent = clock() - start
                            assert not response["batchItemFailures"], response
                        if rep == 0 and n < WARMUP:
                            continue
                        samples[side].append(spent / BATCH_SIZE)
                        if side == "worker":
                            timed_deliveries += BATCH_SIZE
                            calls.update(c.calls)
                            samples["post"].append(c.post / BATCH_SIZE)
                            samples["moto"].append(c.moto / BATCH_SIZE)
                            samples["botocore"].append((c.api - c.moto) / BATCH_SIZE)
                            samples["sign"].append(c.sign / BATCH_SIZE)
                            samples["reg"].append(c.registry / BATCH_SIZE)
                    rig.poller.delete_message_batch(
                        QueueUrl=rig.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(prepared["messages"])
                        ],
                    )
                out.bare.append(median(samples["bare"]))
                out.worker.append(median(samples["worker"]))
                out.post_in_worker.append(median(samples["post"]))
                out.moto.append(median(samples["moto"]))
                out.botocore.append(median(samples["botocore"]))
                out.sign.append(median(samples["sign"]))
                out.registry.append(median(samples["reg"]))
        stats_after = servers.stats()
        bare_pool.clear()
    # the worker's calls in the timed rounds (enqueue/receive/delete above are the harness's,
    # made outside `handle`, and counted only while handle runs)
    out.calls_per_delivery = {op: k / timed_deliveries for op, k in sorted(calls.items())}
    out.connections = {
        side: stats_after[name]["connections"] - stats_before[name]["connections"]
        for side, name in (("bare", "bare"), ("worker", "timed"))
    }
    return out


# -- dollars -----------------------------------------------------------------------------------


def dollars(r: Requests, own_cpu_s: float | None, aws_calls: float) -> dict[str, float]:
    """US dollars per million deliveries (publish share included), by service, prices.json.

    Lambda: invocation shares, and a duration of (measured own CPU per record, scaled to the
    256 MB CPU share) + the worker's AWS calls x the assumed in-region latency + the assumed
    partner response time, per record; the publish records are given the same CPU figure."""
    p = prices()
    lam, assumed = p["lambda"], p["assumptions"]
    per_listing = 1.0 / r.listings
    per_delivery = 1.0 / r.deliveries
    d, pub = r.deliver, r.publish
    fan = r.deliveries / r.listings
    cpu_share = min(1.0, lam["memory_mb"] / lam["full_vcpu_at_mb"])
    cpu_ms = (own_cpu_s or 0.0) * 1000 / cpu_share
    latency = assumed["dynamodb_write_latency_ms"]
    deliver_ms = cpu_ms + aws_calls * latency + assumed["partner_response_ms"]
    publish_calls = pub.ddb_calls_in_worker + pub.count("sqs:Send")
    publish_ms = cpu_ms + publish_calls * per_listing * latency
    batch_overhead = assumed["lambda_invoke_overhead_ms"] / BATCH_SIZE
    gb_s = lam["memory_mb"] / 1024 / 1000 * lam["per_gb_second_x86"] * 1e6
    ddb = p["dynamodb_on_demand"]
    wu = (d.write_units + d.rate_wu) * per_delivery + (
        pub.write_units + pub.rate_wu
    ) * per_listing / fan
    ru = (d.read_units + d.rate_ru) * per_delivery + (
        pub.read_units + pub.rate_ru
    ) * per_listing / fan
    sqs = d.sqs_billed + d.esm_billed
    sqs_pub = pub.sqs_billed + pub.esm_billed
    sm = p["secrets_manager"]["per_10000_api_calls"] / 1e4 * 1e6
    warm_sm = (
        d.count("secrets-manager:") * per_delivery
        + pub.count("secrets-manager:") * per_listing / fan
    )
    logs_bytes = (d.log.bytes + d.shared_log.bytes) * per_delivery + (
        pub.log.bytes + pub.shared_log.bytes
    ) * per_listing / fan
    return {
        "sqs": (sqs * per_delivery + sqs_pub * per_listing / fan)
        * p["sqs"]["standard_per_million_requests"],
        "dynamodb": wu * ddb["per_million_write_request_units"]
        + ru * ddb["per_million_read_request_units"],
        "secrets manager": warm_sm * sm,
        "ssm": 0.0,
        "lambda": (d.invocations_share * per_delivery + pub.invocations_share * per_listing / fan)
        * lam["per_million_requests"]
        + (deliver_ms + batch_overhead + (publish_ms + batch_overhead) / fan) * gb_s,
        "logs": logs_bytes * p["cloudwatch_logs"]["per_gb_ingested"] / 1e3,
        "_deliver_ms": deliver_ms,
    }


# -- report ------------------------------------------------------------------------------------


def run(quick: bool = False) -> list[Result]:
    _paths()
    n = 5 if quick else N_LISTINGS
    p_count = len(PARTNERS)
    print(
        f"\n== 5. Syndication: requests per delivery ({n} listings x {p_count} loopback HTTPS "
        f"partners, batches of {BATCH_SIZE}) =="
    )
    started = time.monotonic()
    r = measure_requests(n)
    pub, d = r.publish, r.deliver
    fan = r.deliveries / r.listings
    ops = sorted(set(pub.calls) | set(d.calls))
    w = 14
    print(
        f"  {'per':<40}{'publish job':>{w}}{'deliver job':>{w}}{'per delivery':>{w}}\n"
        f"  {'':<40}{'(/listing)':>{w}}{'(/delivery)':>{w}}{'(all-in)':>{w}}"
    )

    def line(label: str, a: float, b: float, fmt: str = ".2f") -> None:
        cells = [a / r.listings, b / r.deliveries, a / r.listings / fan + b / r.deliveries]
        print(
            f"  {label:<40}" + "".join("-".rjust(w) if v == 0 else f"{v:>{w}{fmt}}" for v in cells)
        )

    for op in ops:
        line(f"  {op}", pub.calls[op], d.calls[op])
    line("DynamoDB requests", pub.count("dynamodb:"), d.count("dynamodb:"))
    line("  job log write requests (items)", pub.item_writes, d.item_writes)
    line("  job log table write units", pub.table_wu, d.table_wu)
    for index in capacity.indexes_of(template()["Resources"]["JobsTable"]["Properties"]):
        line(f"  job log index {index.name} WU", pub.index_wu[index.name], d.index_wu[index.name])
    line("  rate-limit bucket write units", pub.rate_wu, d.rate_wu)
    line("  write units (all)", pub.write_units + pub.rate_wu, d.write_units + d.rate_wu)
    line("  job log read units", pub.read_units, d.read_units)
    line("  rate-limit bucket read units", pub.rate_ru, d.rate_ru)
    line("SQS requests", pub.count("sqs:"), d.count("sqs:"))
    line(
        "SQS billed requests (64 KB chunks)",
        pub.sqs_billed + pub.esm_billed,
        d.sqs_billed + d.esm_billed,
    )
    line("SSM requests (cache warm)", pub.count("ssm:"), d.count("ssm:"))
    line(
        "Secrets Manager requests (cache warm)",
        pub.count("secrets-manager:"),
        d.count("secrets-manager:"),
    )
    line("Lambda invocations", pub.invocations_share, d.invocations_share)
    line("HTTP requests to partners", 0, r.posts - p_count)
    line(
        "log bytes (worker stdout)",
        pub.log.bytes + pub.shared_log.bytes,
        d.log.bytes + d.shared_log.bytes,
        ".0f",
    )
    print(
        f"  partners: {r.posts} POSTs in all ({r.deliveries} + {p_count} of the cold listing), "
        f"{r.verified} signatures verified there, {r.connections} TLS connections "
        f"(HTTP/1.1 keep-alive); a delivery item in the log after success: {r.item_bytes} bytes"
    )
    cold = ", ".join(f"{k} {v}" for k, v in sorted(r.cold.items())) or "none"
    print(
        f"  cold cache (the first listing, {p_count} partners): {cold}; then none until the "
        f"cache's {CACHE_SECONDS} s pass"
    )

    print(
        f"\n== 5. Syndication: delivery overhead vs a bare urllib3 POST ({REPETITIONS} x "
        f"{2 if quick else ROUNDS} rounds of {BATCH_SIZE}, interleaved, wall time) =="
    )
    o = measure_overhead(rounds=2 if quick else ROUNDS, repetitions=REPETITIONS)
    bare, worker = median(o.bare), median(o.worker)
    moto, boto, signing, registry = (median(x) for x in (o.moto, o.botocore, o.sign, o.registry))
    post_in = median(o.post_in_worker)
    own = worker - bare
    post_extra = post_in - bare
    rest = own - moto - boto - signing - registry - post_extra

    def spread(values: list[float]) -> str:
        return ", ".join(fmt_us(v) for v in values)

    print(f"  per delivery, median of {REPETITIONS} repetitions (each a median of its rounds):")
    print(f"  (a) bare urllib3 POST                       {fmt_us(bare):>12}   [{spread(o.bare)}]")
    print(
        f"  (b) Worker.handle, one delivery             {fmt_us(worker):>12}   [{spread(o.worker)}]"
    )
    print(f"      of which the POST inside the Sender     {fmt_us(post_in):>12}")
    print(f"  ratio (b) / (a)                             {worker / bare:>11.1f}x")
    print(f"  jobkit's own part (b) - (a)                 {fmt_us(own):>12}")
    print(f"    DynamoDB in moto (in-process, not AWS)    {fmt_us(moto):>12}")
    print(f"    botocore client side of those calls       {fmt_us(boto):>12}")
    print(f"    registry look-ups (cache hits)            {fmt_us(registry):>12}")
    print(f"    signing (Standard Webhooks, 1 secret)     {fmt_us(signing):>12}")
    print(f"    the POST's extra time inside (b)          {fmt_us(post_extra):>12}")
    print(f"    the rest (validation, logs, batch, ...)   {fmt_us(rest):>12}")
    no_moto = own - moto
    print(
        f"  jobkit's own without moto (b) - (a) - moto  {fmt_us(no_moto):>12}"
        f"   ((b) - moto) / (a) = {(worker - moto) / bare:.1f}x"
    )
    aws_calls = sum(o.calls_per_delivery.values())
    latency = prices()["assumptions"]["dynamodb_write_latency_ms"] / 1000
    print(
        "  AWS calls per delivery in handle: "
        + ", ".join(f"{k} {v:.2f}" for k, v in o.calls_per_delivery.items())
    )
    print(
        f"  on AWS those {aws_calls:.0f} calls are round trips instead: at the assumed "
        f"{latency * 1000:g} ms each, {fmt_ms(aws_calls * latency)} per delivery on top of "
        f"{fmt_us(no_moto)} of jobkit's own work"
    )
    print(
        f"  TLS connections opened in the timed rounds: bare {o.connections['bare']}, "
        f"worker {o.connections['worker']} (connections reused)"
    )

    p = prices()
    costs = dollars(r, no_moto, aws_calls)
    print(
        f"\n  dollars per million deliveries (prices.json, {p['region']}), publish share included:"
    )
    for part in ("sqs", "dynamodb", "secrets manager", "ssm", "lambda", "logs"):
        print(f"    {part:<24}{costs[part]:>10,.3f}")
    total = sum(v for k, v in costs.items() if not k.startswith("_"))
    print(f"    {'total':<24}{total:>10,.3f}")
    sm_call = p["secrets_manager"]["per_10000_api_calls"] / 1e4
    per_hour = 60 * 60 / CACHE_SECONDS * p_count * sm_call
    print(
        f"    Lambda duration model per delivery: {costs['_deliver_ms']:.1f} ms (own CPU at the "
        f"256 MB share + {aws_calls:.0f} calls x {latency * 1000:g} ms + "
        f"{p['assumptions']['partner_response_ms']:g} ms assumed partner response)"
    )
    print(
        f"    cache refresh: 1 GetParametersByPath ($0) + up to {p_count} GetSecretValue per "
        f"container every {CACHE_SECONDS} s = ${per_hour:.4f} per container-hour; a delivery "
        f"that finds its partner's secret expired pays ${sm_call * 1e6:.2f} per million"
    )
    print(f"  (syndication benchmark: {time.monotonic() - started:.0f} s)")

    all_in = {op: pub.calls[op] / r.listings / fan + d.calls[op] / r.deliveries for op in ops}
    return [
        Result(
            "syndication",
            "AWS requests per delivery, all-in (warm cache)",
            sum(all_in.values()),
            None,
        ),
        Result(
            "syndication",
            "write units per delivery (log + rate limit)",
            (pub.write_units + pub.rate_wu) / r.listings / fan
            + (d.write_units + d.rate_wu) / r.deliveries,
            None,
        ),
        Result(
            "syndication", "HTTP requests per delivery", (r.posts - p_count) / r.deliveries, None
        ),
        Result("syndication", "$ per million deliveries", total, None, "$"),
        Result("syndication", "delivery wall time (b) / bare POST (a)", worker / bare, None, "x"),
        Result(
            "syndication", "(b) without moto / bare POST (a)", (worker - moto) / bare, None, "x"
        ),
    ]
