"""Chaos on the local stack: email workers SIGKILLed at random moments while 300 emails go out.

A kill is what a crash or an out-of-memory kill does to a Lambda sandbox: the process group dies
mid-invocation, nothing of its batch is deleted, and SQS returns the messages after the
visibility timeout (20 s here, the function timeout's floor, instead of the default 180 s). What
each job then does is its type's guarantee (README "Side effects"): an at_least_once email whose
worker died after SES took it is sent again; an at_most_once one is failed as "outcome unknown"
and never sent twice. The test measures the repeats and the outcome-unknown failures
(BENCHMARKS.md, section 7) and asserts only what must hold whatever the timing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from jobkit import aws
from jobkit.client import EnqueueRequest, Jobkit
from jobkit.jobs import Guarantee, JobType
from jobkit.models import Job, JobState
from jobkit.settings import Settings
from jobkit_apps.email import (
    SEND_DOCUMENTS_REMINDER,
    SEND_INVITE,
    SEND_PASSWORD_RESET,
    SEND_VERIFICATION,
    SEND_WELCOME,
)
from jobkit_tools.local import LocalStack
from jobkit_tools.local.esm import Kill
from jobkit_tools.local.faults import SEND_EMAIL_PATH
from jobkit_tools.local.stack import client

from .conftest import ROOT, wait_until

pytestmark = pytest.mark.e2e

# Another seed replays another chaos: JOBKIT_CHAOS_SEED=22 pytest tests/e2e/test_chaos.py -s
SEED = int(os.environ.get("JOBKIT_CHAOS_SEED", "7"))
JOBS = 300  # half at_least_once types, half at_most_once types, one recipient each
DUE_OVER_S = 25  # jobs come due over this many seconds (SQS delays), so invocations run all along
KILL_EVERY_S = (0.2, 1.0)  # a random pause before each kill
SES_LATENCY_S = (0.01, 0.06)  # before SES takes an email, and again before its answer
MAX_KILLS = 40
CHAOS_S = 35.0  # kills stop after this long (or MAX_KILLS): then every job must settle
SETTLE_TIMEOUT_S = 240.0  # generous: the jobs settle about 20 s after the chaos
PARAMETERS = {
    # Killed workers' messages come back 20 s after their receive (the lease is 15 s).
    "EmailFunctionTimeout": "20",
    "EmailVisibilityTimeout": "20",
    "EmailMaximumConcurrency": "3",
    # Smaller batches than the default 10: a fresh container (every kill makes one) is warm
    # sooner, so more of the run is warm invocations that kills can land in.
    "EmailBatchSize": "5",
}
AT_LEAST_ONCE = (SEND_INVITE, SEND_PASSWORD_RESET, SEND_VERIFICATION)
AT_MOST_ONCE = (SEND_WELCOME, SEND_DOCUMENTS_REMINDER)


@dataclass(frozen=True)
class Planned:
    job_id: str
    job_type: JobType
    to: str
    delay: int

    @property
    def guarantee(self) -> Guarantee:
        return self.job_type.guarantee


def payload(job_type: JobType, to: str) -> dict[str, Any]:
    base: dict[str, Any] = {"to": to, "name": "Ada"}
    extra: dict[str, dict[str, Any]] = {
        SEND_INVITE.name: {
            "inviter_name": "Grace",
            "org_name": "Analytical Engines",
            "accept_url": "https://app.example.com/invites/1",
        },
        SEND_PASSWORD_RESET.name: {"reset_url": "https://app.example.com/reset/1"},
        SEND_VERIFICATION.name: {"verify_url": "https://app.example.com/verify/1"},
        SEND_WELCOME.name: {},
        SEND_DOCUMENTS_REMINDER.name: {
            "missing_documents": ["passport"],
            "upload_url": "https://app.example.com/upload",
        },
    }
    return base | extra[job_type.name]


def plan(rng: random.Random) -> list[Planned]:
    """JOBS jobs, half of each guarantee (types in turn), due in shuffled order over DUE_OVER_S."""
    half = JOBS // 2
    types = [AT_LEAST_ONCE[i % 3] for i in range(half)] + [AT_MOST_ONCE[i % 2] for i in range(half)]
    due_order = list(range(JOBS))
    rng.shuffle(due_order)
    return [
        Planned(f"chaos-{i:03d}", t, f"chaos-{i:03d}@example.com", due * DUE_OVER_S // JOBS)
        for i, (t, due) in enumerate(zip(types, due_order, strict=True))
    ]


class SlowSes:
    """SES v2 with a real send's latency, on loopback in front of moto's, and the sends in flight.

    Moto's SES answers in a few milliseconds, SES in tens to hundreds: without the wait, a kill
    at a random moment would rarely land in a send. Each SendEmail waits before moto takes the
    email and again before its answer. As on AWS, a request that has gone out is carried out
    even if its sender dies meanwhile: a worker killed during a send has sent the email, and
    never learns it (the at-least-once window). `sending(job_ids)` tells whether a send for one
    of `job_ids` (the email's `jobkit-job-id` tag) is in flight. Other calls pass unchanged.
    """

    def __init__(self, seed: int, latency: tuple[float, float] = SES_LATENCY_S) -> None:
        self.upstream = ""  # moto's URL: set once the stack is up, before any email is sent
        self.latency = latency
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SlowSes:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sending(self, job_ids: set[str]) -> bool:
        with self._lock:
            return any(self._in_flight[i] for i in job_ids)

    def _pause(self) -> None:
        with self._lock:
            seconds = self._rng.uniform(*self.latency)
        time.sleep(seconds)

    def _count(self, job_id: str, change: int) -> None:
        with self._lock:
            self._in_flight[job_id] += change

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(upstream.netloc, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                # A killed worker resets its kept-alive connection: not an error here.
                with contextlib.suppress(ConnectionError):
                    super().handle()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                job_id = None
                if self.command == "POST" and self.path.split("?")[0] == SEND_EMAIL_PATH:
                    tags = json.loads(body or b"{}").get("EmailTags", [])
                    job_id = next(
                        (t["Value"] for t in tags if t.get("Name") == "jobkit-job-id"), None
                    )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
                headers["Host"] = urlsplit(proxy.upstream).netloc
                if job_id is None:
                    status, answer_headers, data = proxy._forward(
                        self.command, self.path, headers, body
                    )
                else:
                    proxy._count(job_id, +1)
                    try:
                        proxy._pause()
                        status, answer_headers, data = proxy._forward(
                            self.command, self.path, headers, body
                        )
                        proxy._pause()
                    finally:
                        proxy._count(job_id, -1)
                try:
                    self.send_response(status)
                    for key, value in answer_headers:
                        if key.lower() not in hop_by_hop:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the worker was killed while it waited: nobody to answer
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        return Handler


@pytest.fixture(scope="module")
def slow_ses() -> Iterator[SlowSes]:
    proxy = SlowSes(SEED).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_ses: SlowSes
) -> Iterator[LocalStack]:
    """Its own stack on the real template.yaml (the kills must not disturb other tests' jobs),
    the email function sending through `slow_ses`."""
    folder = tmp_path_factory.mktemp("chaos")
    with LocalStack(
        ROOT / "template.yaml",
        PARAMETERS,
        ses_fault_injection=False,
        log_dir=folder / "logs",
        function_environment={"EmailFunction": {"AWS_ENDPOINT_URL_SESV2": slow_ses.url}},
    ) as stack:
        slow_ses.upstream = stack.endpoint_url
        yield stack


@pytest.fixture
def chaos_producer(chaos_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobkit]:
    for key, value in chaos_stack.producer_env().items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield Jobkit(Settings())
    aws.reset_clients()


def queue_empty(stack: LocalStack, queue_url: str) -> bool:
    attributes = client("sqs", stack.endpoint_url).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return not any(int(value) for value in attributes.values())


def dead_letters(stack: LocalStack, queue_url: str) -> Counter[str]:
    """Job ids of the messages in a DLQ (each received once and left hidden), with counts."""
    sqs = client("sqs", stack.endpoint_url)
    ids: Counter[str] = Counter()
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=600,
        ).get("Messages", [])
        if not messages:
            return ids
        for message in messages:
            attribute = message.get("MessageAttributes", {}).get("jobkit-job-id", {})
            # Without jobkit's attribute: SQS's redrive policy put it there, not the worker.
            ids[attribute.get("StringValue", f"(no jobkit-job-id) {message['Body'][:80]}")] += 1


def describe(job: Job, sends: int) -> str:
    return (
        f"{job.id} {job.type} {job.state.value} attempts {job.attempts}/{job.max_attempts} "
        f"sends {sends} error {job.error!r}"
    )


def note_settled(producer: Jobkit, planned: list[Planned], final: dict[str, Job]) -> None:
    """Add to `final` each planned job that has settled since the last look. (A failed job is
    settled once its dead letter is sent: `dead_letter_due` is set by the failing write and
    cleared after the send, a moment later.)"""
    for p in planned:
        if p.job_id not in final:
            job = producer.get_job(p.job_id)
            if job is not None and job.state.finished and not job.dead_letter_due:
                final[p.job_id] = job


def job_ids(kill: Kill) -> set[str]:
    return {str(json.loads(record["body"]).get("id")) for record in kill.records}


def test_workers_killed_at_random_never_send_an_at_most_once_email_twice(
    chaos_stack: LocalStack, chaos_producer: Jobkit, slow_ses: SlowSes
) -> None:
    rng = random.Random(SEED)
    outputs = chaos_stack.deployment.outputs
    (poller,) = [p for p in chaos_stack.pollers if p.function.logical_id == "EmailFunction"]
    logs = chaos_stack.logs.directory

    # Given 300 email jobs, half of at_least_once types and half of at_most_once types, each to
    # its own recipient, coming due over 25 s
    planned = plan(rng)
    assert Counter(p.guarantee for p in planned) == {
        Guarantee.AT_LEAST_ONCE: JOBS // 2,
        Guarantee.AT_MOST_ONCE: JOBS // 2,
    }
    assert len({p.to for p in planned}) == JOBS
    started = time.monotonic()
    enqueued = chaos_producer.enqueue_many(
        EnqueueRequest(p.job_type, payload(p.job_type, p.to), p.job_id, p.delay or None)
        for p in planned
    )
    assert not enqueued.failed, enqueued.failed[:3]

    # When email containers are SIGKILLed at random moments while jobs run: every 0.2-1.0 s
    # (a seeded schedule: the pause is the chaos, not a wait for something), a container picked
    # among those in the middle of an invocation other than their first (mostly warm-up, see
    # QueuePoller.kill_one), until MAX_KILLS or CHAOS_S; each kill noted with the SES send it
    # interrupted, if any
    kills: list[Kill] = []
    kills_in_send = 0
    chaos_ends = started + CHAOS_S
    while len(kills) < MAX_KILLS and time.monotonic() < chaos_ends:
        time.sleep(rng.uniform(*KILL_EVERY_S))
        kill = chaos_stack.kill_random_worker(rng, function="EmailFunction", warm_only=True)
        if kill is not None:
            kills.append(kill)
            if slow_ses.sending(job_ids(kill)):
                kills_in_send += 1

    # And every job has reached a final state (failed ones with their dead letter sent) and the
    # email queue is empty
    final: dict[str, Job] = {}

    def settled() -> bool:
        note_settled(chaos_producer, planned, final)
        return len(final) == len(planned) and queue_empty(chaos_stack, outputs["EmailQueueUrl"])

    try:
        wait_until(settled, SETTLE_TIMEOUT_S, interval=0.5, what="every job to settle")
    except pytest.fail.Exception:
        stuck = [p.job_id for p in planned if p.job_id not in final]
        items = [chaos_producer.get_job(job_id) for job_id in stuck[:10]]
        pytest.fail(
            f"{len(stuck)} jobs not final after {SETTLE_TIMEOUT_S:g} s (a job stuck under "
            f"chaos is a bug): {items}; worker logs in {logs}"
        )
    duration = time.monotonic() - started

    # Then count what SES sent to each recipient, and what each guarantee made of the kills
    sent = chaos_stack.sent_emails()
    sends = Counter(address for email in sent for address in email["destinations"])
    message_ids: dict[str, set[str]] = {}
    for email in sent:
        for address in email["destinations"]:
            message_ids.setdefault(address, set()).add(email["id"])
    least = [p for p in planned if p.guarantee is Guarantee.AT_LEAST_ONCE]
    most = [p for p in planned if p.guarantee is Guarantee.AT_MOST_ONCE]
    repeats = sum(max(sends[p.to] - 1, 0) for p in least)
    unknown = [p for p in most if final[p.job_id].state is JobState.FAILED]
    unknown_sent = sum(sends[p.to] for p in unknown)
    # Jobs a kill reached: an attempt lost (at_least_once) or failed (at_most_once)
    hit = sum(1 for j in final.values() if j.attempts > 1 or j.state is JobState.FAILED)
    summary = (
        f"chaos (seed {SEED}): {len(least)} at_least_once + {len(most)} at_most_once jobs; "
        f"kills {poller.stats.kills} ({poller.stats.kills_mid_invocation} mid-invocation, "
        f"{kills_in_send} during an SES send); "
        f"jobs hit {hit}; at_least_once repeats {repeats} ({100 * repeats / len(least):.1f}%); "
        f"at_most_once outcome unknown {len(unknown)} ({100 * len(unknown) / len(most):.1f}%: "
        f"{unknown_sent} sent, {len(unknown) - unknown_sent} not); "
        f"cold starts {poller.stats.cold_starts}; {duration:.1f} s; worker logs in {logs}"
    )
    print(f"\n{summary}")
    assert len(kills) == poller.stats.kills, summary

    # And the chaos did reach the jobs (otherwise this test proved nothing)
    assert poller.stats.kills_mid_invocation >= 1 and hit >= 1, summary

    # And no at_most_once email went out twice: each succeeded with exactly one send, or failed
    # as "outcome unknown" with at most one
    wrong = [
        describe(final[p.job_id], sends[p.to])
        for p in most
        if not (
            (final[p.job_id].state is JobState.SUCCEEDED and sends[p.to] == 1)
            or (
                final[p.job_id].state is JobState.FAILED
                and (final[p.job_id].error or "").startswith("outcome unknown")
                and sends[p.to] <= 1
            )
        )
    ]
    assert not wrong, f"at_most_once jobs broken: {wrong}\n{summary}"

    # And every at_least_once job succeeded, with at least one send, its result one of them
    wrong = [
        describe(final[p.job_id], sends[p.to])
        for p in least
        if final[p.job_id].state is not JobState.SUCCEEDED
        or sends[p.to] < 1
        or (final[p.job_id].result or {}).get("ses_message_id") not in message_ids.get(p.to, ())
    ]
    assert not wrong, f"at_least_once jobs not delivered: {wrong}\n{summary}"

    # And no job ran more attempts than its max_attempts
    wrong = [
        describe(final[p.job_id], sends[p.to])
        for p in planned
        if final[p.job_id].attempts > final[p.job_id].max_attempts
    ]
    assert not wrong, f"attempts over the maximum: {wrong}\n{summary}"

    # And the email DLQ holds every failed job and nothing else. (A worker killed after a dead
    # letter went out but before the job's `dead_letter_due` was cleared sends it again: a
    # repeat, counted, never a loss.)
    failed = {p.job_id for p in planned if final[p.job_id].state is JobState.FAILED}
    in_dlq = dead_letters(chaos_stack, outputs["EmailDeadLetterQueueUrl"])
    repeated = {job_id: n for job_id, n in in_dlq.items() if n > 1}
    print(
        f"dead letters: {sum(in_dlq.values())} for {len(failed)} failed jobs, repeated {repeated}"
    )
    assert set(in_dlq) == failed, (
        f"DLQ vs failed jobs: only in the DLQ {sorted(set(in_dlq) - failed)}; "
        f"failed but not in the DLQ: {[final[i] for i in sorted(failed - set(in_dlq))]}"
        f"\n{summary}"
    )
    assert not any(final[i].dead_letter_due for i in failed), summary
