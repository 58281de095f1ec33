"""`jobkit queues`: how many messages each queue holds and how many jobs are in each
off-happy-path state, as a table or as JSON. `add_command` puts it on the `jobkit` app."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jobkit.client import JobCounts, Jobkit, QueueOverview

if TYPE_CHECKING:
    from jobkit_tools.discover import Target


def as_json(found: list[QueueOverview], counts: JobCounts) -> dict[str, Any]:
    """`{"queues": [...], "states": {...}}`; `dead_letters` is null for a queue without a DLQ."""
    return {"queues": [asdict(q) for q in found], "states": asdict(counts)}


def table(found: list[QueueOverview], title: str) -> Table:
    """One row a queue: SQS's approximate counts, the age of its oldest message ("-": no
    metric datapoint, or no right to read metrics), its DLQ's count ("-": no DLQ), and whether
    its worker receives ("-": no worker's mapping found)."""
    shown = Table(title=title)
    for column in ("queue", "waiting", "in flight", "delayed", "oldest", "DLQ", "worker"):
        shown.add_column(column, justify="right" if column not in ("queue", "worker") else "left")
    for q in found:
        dlq = "-" if q.dead_letters is None else str(q.dead_letters)
        worker = "-" if q.paused is None else "paused" if q.paused else "running"
        oldest = age_text(q.oldest_age_seconds)
        shown.add_row(
            q.queue, str(q.waiting), str(q.in_flight), str(q.delayed), oldest, dlq, worker
        )
    return shown


def age_text(seconds: float | None) -> str:
    """`4m 10s`, `2h 5m`, `3d 4h`, `12s`; "-" when unknown."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    for big, big_unit, small, small_unit in (
        (days, "d", hours, "h"),
        (hours, "h", minutes, "m"),
        (minutes, "m", secs, "s"),
    ):
        if big:
            return f"{big}{big_unit} {small}{small_unit}"
    return f"{secs}s"


def counts_line(counts: JobCounts) -> str:
    """`jobs: scheduled 1, retrying 0, failed 2, cancelled 0` (all queues)."""
    return "jobs: " + ", ".join(f"{state} {n}" for state, n in asdict(counts).items())


StackFlag = Annotated[
    str | None,
    typer.Option("--stack", help="Deployed CloudFormation stack (default: as the rest)."),
]


def add_command(
    app: typer.Typer,
    client_of: Callable[[str | None], tuple[Jobkit, Target]],
    clear_errors: Callable[[], AbstractContextManager[None]],
    console: Console,
) -> None:
    """Add `jobkit queues` (the overview) and `jobkit queues pause|resume QUEUE` to `app`,
    with the CLI's client finder and error handling."""
    queues_app = typer.Typer(invoke_without_command=True, help="Queues: overview, pause, resume.")
    app.add_typer(queues_app, name="queues")

    @queues_app.callback()
    def queues(
        ctx: typer.Context,
        queue: Annotated[
            list[str] | None, typer.Option("--queue", help="Only this queue (repeatable).")
        ] = None,
        as_json_: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
        stack: StackFlag = None,
    ) -> None:
        """Messages per queue (waiting, in flight, delayed, DLQ) and jobs per state."""
        if ctx.invoked_subcommand is not None:
            return
        client, target = client_of(stack)
        with clear_errors():
            found, counts = client.queue_overview(queue), client.state_counts()
        if as_json_:
            console.print_json(json.dumps(as_json(found, counts)))
            return
        console.print(table(found, f"queues ({target.description})"))
        console.print(counts_line(counts))

    @queues_app.command("pause")
    def pause(queue: str, stack: StackFlag = None) -> None:
        """Stop the queue's worker from receiving (its event source mapping disabled): its
        jobs wait in the queue; running ones finish."""
        client, _ = client_of(stack)
        with clear_errors():
            states = client.pause_queue(queue)
        console.print(f"{queue} paused ({', '.join(states)})")

    @queues_app.command("resume")
    def resume(queue: str, stack: StackFlag = None) -> None:
        """Let the queue's worker receive again."""
        client, _ = client_of(stack)
        with clear_errors():
            states = client.resume_queue(queue)
        console.print(f"{queue} resumed ({', '.join(states)})")
