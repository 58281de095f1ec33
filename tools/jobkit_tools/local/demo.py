"""`jobkit dev --demo`: a workload through the real template, worker and library, checked.

It enqueues email jobs the ways producers do (one at a time, in batches, the same id twice,
invalid input, raw envelopes from "another language"), lets the local stack run them, with
the SES proxy throttling `flaky*` recipients, and then checks every job against what it should
have become: state, attempts, emails in moto's SES, messages in the dead-letter queue. Its time
part (demo_time.py) adds delayed jobs, a cron schedule that fans out, and reminder sequences;
its syndication part (demo_syndication.py) publishes listings to the stack's partner endpoints.
The exit code says whether all of it held.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobkit_tools.local import demo_syndication, demo_time
from jobkit_tools.local.stack import client

if TYPE_CHECKING:
    from rich.console import Console

    from jobkit.client import Jobkit
    from jobkit.models import Job
    from jobkit_tools.local.dev import LocalStack

VALID_JOBS = 200  # 150 through enqueue_many, 50 through enqueue
BATCHED = 150
DUPLICATES = 20  # 10 repeated inside an enqueue_many batch, 10 enqueued again one by one
FLAKY = 10  # throttled by the SES proxy on their first attempt; one every FLAKY_EVERY jobs
FLAKY_EVERY = 15
RAW_INVALID = 8  # envelopes sent straight to SQS, with an address that does not validate
INVALID_ADDRESSES = (
    "not-an-address",
    "ada@",
    "@example.com",
    "ada@@example.com",
    "ada lovelace@example.com",
    "ada@example",
    "ada@-example.com",
    "ada@example..com",
    "ada@example.com, bob@example.com",
    "ada@exa mple.com",
)  # the first 10 are enqueued one by one, the first 5 again in a batch: 15 rejections
REJECTED_BATCHED = 5


@dataclass
class Expected:
    """What the workload must produce; filled in as jobs are enqueued."""

    succeed_first_try: set[str] = field(default_factory=set)
    succeed_second_try: set[str] = field(default_factory=set)  # flaky recipients
    fail_permanently: set[str] = field(default_factory=set)  # raw envelopes
    rejected: set[str] = field(default_factory=set)  # job ids that must not exist
    duplicates_returned_existing: int = 0
    recipients: dict[str, str] = field(default_factory=dict)  # job id -> address

    @property
    def all_jobs(self) -> set[str]:
        return self.succeed_first_try | self.succeed_second_try | self.fail_permanently


def _payload(kind: int, to: str, n: int) -> dict[str, Any]:
    """A valid payload for each of the four email types."""
    name = f"User {n}"
    if kind == 0:
        return {
            "to": to,
            "name": name,
            "inviter_name": "Grace",
            "org_name": "Analytical Engines Ltd",
            "accept_url": f"https://app.example.com/invites/{n}",
        }
    if kind == 1:
        return {"to": to, "name": name, "reset_url": f"https://app.example.com/reset/{n}"}
    if kind == 2:
        return {"to": to, "name": name, "verify_url": f"https://app.example.com/verify/{n}"}
    return {"to": to, "name": name, "app_name": "jobkit demo"}


def enqueue_workload(jobkit: Jobkit, queue_url: str, run: str) -> tuple[Expected, list[str]]:
    """Enqueue everything; returns what must happen and notes on the enqueue side."""
    from jobkit.catalog.email import ALL
    from jobkit.client import EnqueueRequest
    from jobkit.errors import JobValidationError

    expected = Expected()
    notes: list[str] = []

    def job(n: int) -> tuple[str, str, dict[str, Any], str]:
        job_type = ALL[n % 4]
        to = f"user-{run}-{n}@example.com"
        return f"demo-{run}-{n}", job_type.name, _payload(n % 4, to, n), to

    def flaky(k: int) -> tuple[str, str, dict[str, Any], str]:
        job_type = ALL[k % 4]
        to = f"flaky-{run}-{k}@example.com"
        return f"demo-{run}-flaky-{k}", job_type.name, _payload(k % 4, to, k), to

    # (c) flaky recipients are spread through the workload (one every FLAKY_EVERY jobs), as
    # throttling would hit a real one: each throttled call holds its batch for a few seconds
    # of SES client retries, so a batch full of them would run into the function's timeout.
    flaky_after = {FLAKY_EVERY * (k + 1) - 1: k for k in range(FLAKY)}

    def expect(job_id: str, to: str, second_try: bool) -> None:
        (expected.succeed_second_try if second_try else expected.succeed_first_try).add(job_id)
        expected.recipients[job_id] = to

    # (a) valid jobs: a batch with repeats inside it, then one by one, then repeats again
    requests = []
    for n in range(BATCHED):
        job_id, type_name, payload, to = job(n)
        requests.append(EnqueueRequest(type_name, payload, job_id))
        expect(job_id, to, second_try=False)
        if n in flaky_after:
            job_id, type_name, payload, to = flaky(flaky_after[n])
            requests.append(EnqueueRequest(type_name, payload, job_id))
            expect(job_id, to, second_try=True)
    for n in range(DUPLICATES // 2):
        job_id, type_name, payload, _ = job(n)
        requests.append(EnqueueRequest(type_name, payload, job_id))
    # (b) invalid input in the same batch: rejected alone, the rest goes through
    for n, address in enumerate(INVALID_ADDRESSES[:REJECTED_BATCHED]):
        job_id = f"demo-{run}-rejected-batch-{n}"
        requests.append(EnqueueRequest(ALL[n % 4].name, _payload(n % 4, address, n), job_id))
        expected.rejected.add(job_id)
    result = jobkit.enqueue_many(requests)
    created = {j.id for j in result.created}
    missing = expected.all_jobs - created
    if missing:
        notes.append(f"enqueue_many did not create {len(missing)} valid jobs")
    expected.duplicates_returned_existing += sum(
        1 for o in result.outcomes if o.ok and not o.created
    )
    rejected_in_batch = [o for o in result.failed if o.job_id in expected.rejected]
    if len(rejected_in_batch) != REJECTED_BATCHED:
        notes.append(f"enqueue_many rejected {len(rejected_in_batch)}, not {REJECTED_BATCHED}")

    for n in range(BATCHED, VALID_JOBS):
        job_id, type_name, payload, to = job(n)
        jobkit.enqueue(type_name, payload, job_id=job_id)
        expect(job_id, to, second_try=False)
        if n in flaky_after:
            job_id, type_name, payload, to = flaky(flaky_after[n])
            jobkit.enqueue(type_name, payload, job_id=job_id)
            expect(job_id, to, second_try=True)
    for n in range(BATCHED, BATCHED + DUPLICATES // 2):
        job_id, type_name, payload, _ = job(n)
        again = jobkit.enqueue(type_name, payload, job_id=job_id)
        if again.id == job_id:
            expected.duplicates_returned_existing += 1

    for n, address in enumerate(INVALID_ADDRESSES):
        job_id = f"demo-{run}-rejected-{n}"
        expected.rejected.add(job_id)
        try:
            jobkit.enqueue(ALL[n % 4].name, _payload(n % 4, address, n), job_id=job_id)
        except JobValidationError:
            continue
        notes.append(f"enqueue accepted an invalid address ({job_id})")

    # (b) raw envelopes, as a producer in another language would send them: not validated
    sqs = client("sqs", os.environ["AWS_ENDPOINT_URL"])
    for n in range(RAW_INVALID):
        job_id = f"demo-{run}-raw-{n}"
        envelope = {
            "v": 1,
            "id": job_id,
            "type": ALL[n % 4].name,
            "payload": _payload(n % 4, INVALID_ADDRESSES[n], n),
            "enqueued_at": datetime.now(UTC).isoformat(),
        }
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
        expected.fail_permanently.add(job_id)
    return expected, notes


def snapshot(jobkit: Jobkit, ids: set[str]) -> dict[str, Job]:
    """The demo's jobs as the job log has them (the library's `list_jobs`, newest first)."""
    jobs = jobkit.list_jobs(limit=len(ids) * 2 + 100)
    return {job.id: job for job in jobs if job.id in ids}


@dataclass
class Check:
    what: str
    expected: Any
    actual: Any

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.actual)


def sent_by_address(stack: LocalStack) -> Counter[str]:
    return Counter(
        address.lower() for message in stack.sent_emails() for address in message["destinations"]
    )


def verify(
    stack: LocalStack,
    jobkit: Jobkit,
    expected: Expected,
    jobs: dict[str, Job],
    work: demo_time.TimeWorkload,
    listings: demo_syndication.SyndicationWorkload,
) -> list[Check]:
    """Every expectation of the workload, against the job log, moto's SES and the DLQ."""
    sent = sent_by_address(stack)

    def count(ids: set[str], state: str, attempts: int | None = None) -> int:
        return sum(
            1
            for i in ids
            if i in jobs
            and jobs[i].state.value == state
            and (attempts is None or jobs[i].attempts == attempts)
        )

    rejected_present = sum(1 for i in expected.rejected if jobkit.get_job(i) is not None)
    rejected_mailed = sum(sent[a.lower()] for a in INVALID_ADDRESSES)
    valid_mailed_once = sum(
        1 for i in expected.succeed_first_try if sent[expected.recipients[i].lower()] == 1
    )
    flaky_mailed_once = sum(
        1 for i in expected.succeed_second_try if sent[expected.recipients[i].lower()] == 1
    )
    proxy = stack.proxy
    throttled = sum(len(calls) for calls in proxy.stats.throttled_calls.values()) if proxy else 0
    dlq_url = stack.deployment.dead_letter_queues().get("email", "")
    dlq_reasons = _dead_letter_reasons(stack, dlq_url) if dlq_url else {}
    raw = expected.fail_permanently
    return [
        Check("valid jobs succeeded on attempt 1", len(expected.succeed_first_try),
              count(expected.succeed_first_try, "succeeded", 1)),
        Check("  ... each sent exactly one email", len(expected.succeed_first_try),
              valid_mailed_once),
        Check("duplicate enqueues returned the existing job", DUPLICATES,
              expected.duplicates_returned_existing),
        Check("rejected at enqueue (validation error)", len(INVALID_ADDRESSES) + REJECTED_BATCHED,
              len(expected.rejected) - rejected_present),
        Check("  ... nothing written, nothing sent", 0, rejected_present + rejected_mailed),
        Check("raw invalid envelopes failed permanently", len(raw), count(raw, "failed", 1)),
        Check("  ... in the DLQ with the reason", len(raw),
              sum(1 for i in raw if "invalid payload" in dlq_reasons.get(i, ""))),
        Check("flaky recipients succeeded on attempt 2", len(expected.succeed_second_try),
              count(expected.succeed_second_try, "succeeded", 2)),
        Check("  ... throttled SES calls (proxy)", len(expected.succeed_second_try), throttled),
        Check("  ... each sent exactly one email", len(expected.succeed_second_try),
              flaky_mailed_once),
        *(Check(*check) for check in demo_time.checks(jobkit, work, sent)),
        Check("emails sent (moto SES)",
              len(expected.succeed_first_try) + len(expected.succeed_second_try)
              + work.expected_emails(),
              sum(sent.values())),
        Check("email DLQ depth", len(raw), stack.queue_depth(dlq_url) if dlq_url else None),
        *(Check(*check) for check in demo_syndication.checks(jobkit, listings)),
        Check("syndication DLQ depth (the rejections)", demo_syndication.LISTINGS,
              stack.queue_depth(stack.deployment.dead_letter_queues().get("syndication", ""))),
    ]  # fmt: skip


def _dead_letter_reasons(stack: LocalStack, dlq_url: str) -> dict[str, str]:
    """Job id -> the `jobkit-reason` the worker attached, peeking at the DLQ (not consuming)."""
    sqs = client("sqs", stack.endpoint_url)
    reasons: dict[str, str] = {}
    handles = []
    for _ in range(10):
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            job_id = attributes.get("jobkit-job-id", {}).get("StringValue", "")
            reasons[job_id] = attributes.get("jobkit-reason", {}).get("StringValue", "")
            handles.append(message["ReceiptHandle"])
    for start in range(0, len(handles), 10):  # make them visible again: only a peek
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )
    return reasons


def _progress_table(jobs: dict[str, Job], expected: Expected, elapsed: float, sent: int) -> Any:
    from rich.table import Table

    states = Counter(job.state.value for job in jobs.values())
    table = Table(title=f"jobkit demo: {len(expected.all_jobs)} jobs, {elapsed:4.1f} s")
    for state in ("queued", "running", "retrying", "succeeded", "failed"):
        table.add_column(state, justify="right")
    table.add_column("emails sent", justify="right")
    table.add_row(
        *(str(states.get(s, 0)) for s in ("queued", "running", "retrying", "succeeded", "failed")),
        str(sent),
    )
    return table


def run_demo(
    stack: LocalStack, console: Console, stopping: threading.Event, timeout: float = 300.0
) -> int:
    """Run the workload on a started stack (with SES fault injection); 0 if all went as expected."""
    from jobkit import aws
    from jobkit.client import Jobkit
    from jobkit.settings import Settings

    os.environ.update(stack.producer_env())  # this process is the producer now
    aws.reset_clients()
    for module in ("email", "nightly", "reminders", "syndication"):  # declare the job types
        importlib.import_module(f"jobkit.catalog.{module}")

    producer = Jobkit(Settings())
    run = datetime.now(UTC).strftime("%H%M%S")
    started = time.monotonic()
    queue_url = json.loads(stack.producer_env()["JOBKIT_QUEUES"])["email"]
    expected, notes = enqueue_workload(producer, queue_url, run)
    work = demo_time.start(producer, run)
    listings = demo_syndication.start(producer, run)
    enqueued_in = time.monotonic() - started
    console.print(
        f"enqueued {len(expected.all_jobs)} jobs ({len(expected.rejected)} rejected at enqueue,"
        f" {DUPLICATES} duplicates) in {enqueued_in:.1f} s; {len(work.delayed)} delayed jobs,"
        f" schedule {work.schedule} (next run {work.cron_run.rsplit('@', 1)[-1]}),"
        f" 3 reminder sequences, {len(listings.listings)} listings to"
        f" {len(demo_syndication.EXPECTED)} partners"
    )
    try:
        return _wait_and_check(
            stack, console, stopping, started + timeout, producer, expected, notes, work, listings
        )
    finally:
        demo_time.finish(producer, work)


def _wait_and_check(
    stack: LocalStack,
    console: Console,
    stopping: threading.Event,
    deadline: float,
    producer: Jobkit,
    expected: Expected,
    notes: list[str],
    work: demo_time.TimeWorkload,
    listings: demo_syndication.SyndicationWorkload,
) -> int:
    """Show progress until every job has ended (or the deadline), then check them all."""
    from rich.live import Live
    from rich.table import Table

    timeout = deadline - time.monotonic()
    started = time.monotonic()
    ids = expected.all_jobs
    jobs: dict[str, Job] = {}
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    last_line = 0.0
    with live or contextlib.nullcontext():
        while not stopping.is_set() and time.monotonic() < deadline:
            jobs = snapshot(producer, ids)
            done = sum(1 for j in jobs.values() if j.state.finished)
            elapsed = time.monotonic() - started
            if live is not None:
                sent = len(stack.sent_emails())
                live.update(_progress_table(jobs, expected, elapsed, sent), refresh=True)
            elif time.monotonic() - last_line >= 2:
                states = Counter(job.state.value for job in jobs.values())
                console.print(
                    f"{elapsed:5.1f} s  " + "  ".join(f"{k} {v}" for k, v in states.items())
                )
                last_line = time.monotonic()
            demo_time.tick(producer, work, sent_by_address(stack))
            if (
                done == len(ids)
                and _all_quiet(stack)
                and demo_time.done(producer, work)
                and demo_syndication.done(producer, listings)
            ):
                break
            stopping.wait(0.5)
    elapsed = time.monotonic() - started
    if stopping.is_set():
        console.print("[yellow]demo interrupted[/yellow]")
        return 130

    checks = verify(stack, producer, expected, jobs, work, listings)
    table = Table(title=f"jobkit demo: {elapsed:.1f} s")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("")
    for check in checks:
        mark = "[green]ok[/green]" if check.ok else "[red]MISMATCH[/red]"
        table.add_row(check.what, str(check.expected), str(check.actual), mark)
    console.print(table)
    unfinished = [i for i in sorted(ids) if i not in jobs or not jobs[i].state.finished]
    for note in notes:
        console.print(f"[red]{note}[/red]")
    if unfinished:
        console.print(
            f"[red]{len(unfinished)} jobs did not finish within {timeout:.0f} s:[/red] "
            + ", ".join(
                f"{i} ({jobs[i].state.value if i in jobs else 'missing'})" for i in unfinished[:10]
            )
        )
    for poller in stack.pollers:
        s = poller.stats
        console.print(
            f"{poller.mapping.function_name}: {s.batches} batches"
            f" (avg {s.records / max(1, s.batches):.1f} records), {s.cold_starts} cold starts,"
            f" {s.timeouts} timeouts, {s.errors} errors"
        )
    if all(c.ok for c in checks) and not notes and not unfinished:
        console.print("[bold green]demo passed[/bold green]: every job ended as it should")
        return 0
    console.print("[bold red]demo failed[/bold red]: see the mismatches above")
    return 1


def _all_quiet(stack: LocalStack) -> bool:
    """No batch in flight and the email queue empty: nothing more can change."""
    queue_url = json.loads(stack.producer_env()["JOBKIT_QUEUES"])["email"]
    return stack.queue_depth(queue_url) == 0
