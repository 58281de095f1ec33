"""`jobkit dev --demo`: a workload through the real template, worker and library, checked.

Its email part (demo_email.py) enqueues email jobs the ways producers do (one at a time, in
batches, the same id twice, invalid input, raw envelopes from "another language"); the local
stack runs them, with the SES proxy throttling `flaky*` recipients, and then every job is
checked against what it should have become: state, attempts, emails in moto's SES, messages in
the dead-letter queue. Its time part (demo_time.py) adds delayed jobs, a cron schedule that fans
out, and reminder sequences; its syndication part (demo_syndication.py) publishes listings to
the stack's partner endpoints. The exit code says whether all of it held.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobkit_tools.local import demo_email, demo_syndication, demo_time
from jobkit_tools.local.demo_email import DUPLICATES, Expected

if TYPE_CHECKING:
    from rich.console import Console

    from jobkit.client import Jobkit
    from jobkit.models import Job
    from jobkit_tools.local.local_stack import LocalStack


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
    dlq_url = stack.deployment.dead_letter_queues().get("email", "")
    return [
        *(Check(*check) for check in demo_email.checks(stack, jobkit, expected, jobs, sent)),
        *(Check(*check) for check in demo_time.checks(jobkit, work, sent)),
        Check("emails sent (moto SES)",
              len(expected.succeed_first_try) + len(expected.succeed_second_try)
              + work.expected_emails(),
              sum(sent.values())),
        Check("email DLQ depth", len(expected.fail_permanently),
              stack.queue_depth(dlq_url) if dlq_url else None),
        *(Check(*check) for check in demo_syndication.checks(jobkit, listings)),
        Check("syndication DLQ depth (the rejections)", demo_syndication.LISTINGS,
              stack.queue_depth(stack.deployment.dead_letter_queues().get("syndication", ""))),
    ]  # fmt: skip


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
        importlib.import_module(f"jobkit_apps.{module}")

    producer = Jobkit(Settings())
    run = datetime.now(UTC).strftime("%H%M%S")
    started = time.monotonic()
    queue_url = stack.deployment.outputs["EmailQueueUrl"]
    expected, notes = demo_email.enqueue_workload(producer, queue_url, run)
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
    timeout = deadline - time.monotonic()
    started = time.monotonic()
    jobs = _wait(stack, console, stopping, deadline, started, producer, expected, work, listings)
    elapsed = time.monotonic() - started
    if stopping.is_set():
        console.print("[yellow]demo interrupted[/yellow]")
        return 130

    checks = verify(stack, producer, expected, jobs, work, listings)
    console.print(_checks_table(checks, elapsed))
    unfinished = [
        i for i in sorted(expected.all_jobs) if i not in jobs or not jobs[i].state.finished
    ]
    for note in notes:
        console.print(f"[red]{note}[/red]")
    if unfinished:
        console.print(
            f"[red]{len(unfinished)} jobs did not finish within {timeout:.0f} s:[/red] "
            + ", ".join(
                f"{i} ({jobs[i].state.value if i in jobs else 'missing'})" for i in unfinished[:10]
            )
        )
    _print_poller_stats(stack, console)
    if all(c.ok for c in checks) and not notes and not unfinished:
        console.print("[bold green]demo passed[/bold green]: every job ended as it should")
        return 0
    console.print("[bold red]demo failed[/bold red]: see the mismatches above")
    return 1


def _wait(
    stack: LocalStack,
    console: Console,
    stopping: threading.Event,
    deadline: float,
    started: float,
    producer: Jobkit,
    expected: Expected,
    work: demo_time.TimeWorkload,
    listings: demo_syndication.SyndicationWorkload,
) -> dict[str, Job]:
    """Until everything is done, the deadline or Ctrl-C: show progress and drive the time
    part. The demo's jobs as last seen."""
    from rich.live import Live

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
                _print_states(console, jobs, elapsed)
                last_line = time.monotonic()
            demo_time.tick(producer, work, sent_by_address(stack))
            if done == len(ids) and _all_finished(stack, producer, work, listings):
                break
            stopping.wait(0.5)
    return jobs


def _print_states(console: Console, jobs: dict[str, Job], elapsed: float) -> None:
    states = Counter(job.state.value for job in jobs.values())
    console.print(f"{elapsed:5.1f} s  " + "  ".join(f"{k} {v}" for k, v in states.items()))


def _all_finished(
    stack: LocalStack,
    producer: Jobkit,
    work: demo_time.TimeWorkload,
    listings: demo_syndication.SyndicationWorkload,
) -> bool:
    """Nothing more can change, beyond the email jobs that have all ended."""
    return (
        _all_quiet(stack)
        and demo_time.done(producer, work)
        and demo_syndication.done(producer, listings)
    )


def _checks_table(checks: list[Check], elapsed: float) -> Any:
    from rich.table import Table

    table = Table(title=f"jobkit demo: {elapsed:.1f} s")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("")
    for check in checks:
        mark = "[green]ok[/green]" if check.ok else "[red]MISMATCH[/red]"
        table.add_row(check.what, str(check.expected), str(check.actual), mark)
    return table


def _print_poller_stats(stack: LocalStack, console: Console) -> None:
    for poller in stack.pollers:
        s = poller.stats
        console.print(
            f"{poller.mapping.function_name}: {s.batches} batches"
            f" (avg {s.records / max(1, s.batches):.1f} records), {s.cold_starts} cold starts,"
            f" {s.timeouts} timeouts, {s.errors} errors"
        )


def _all_quiet(stack: LocalStack) -> bool:
    """No batch in flight and the email queue empty: nothing more can change."""
    queue_url = stack.deployment.outputs["EmailQueueUrl"]
    return stack.queue_depth(queue_url) == 0
