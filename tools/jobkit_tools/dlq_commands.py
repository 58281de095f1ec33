"""`jobkit dlq ...`: list, peek at, redrive (all or a subset) and purge a queue's dead letters."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jobkit.admin_calls import RedriveResult
from jobkit.dead_letter_calls import DeadLetter
from jobkit.errors import InvalidRequestError

if TYPE_CHECKING:
    from jobkit.client import Jobkit
    from jobkit_tools.discover import Target

Stack = Annotated[
    str | None,
    typer.Option("--stack", help="Deployed CloudFormation stack (default: as the rest)."),
]


def _interactive() -> bool:
    return sys.stdin.isatty()


def _age(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def table(letters: list[DeadLetter], title: str) -> Table:
    found = Table(title=title)
    for column in ("message id", "job id", "type", "reason", "age"):
        found.add_column(column, overflow="fold")
    for letter in letters:
        found.add_row(
            letter.message_id,
            letter.job_id or "-",
            letter.job_type or "-",
            (letter.reason or "")[:80],
            _age(letter.age_seconds),
        )
    return found


def as_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON, its body parsed when it is JSON (addresses already masked)."""
    shown = dataclasses.asdict(letter)
    with suppress(json.JSONDecodeError):
        shown["body"] = json.loads(letter.body)
    return shown


def _redrive_line(result: RedriveResult) -> str:
    if result.moved is None:
        return f"move task started: {result.task_handle}"
    if result.dry_run:
        return f"dry run: {result.matched} of {result.left} messages read would move"
    left = f"; {result.left} left in the DLQ" if result.left is not None else ""
    return f"moved {result.moved} messages back to {result.queue}{left}"


def _confirm_purge(queue: str, fail: Callable[[Exception, int], typer.Exit]) -> None:
    """Ask before a purge; refuse (exit 2) where nobody can be asked."""
    if not _interactive():
        raise fail(InvalidRequestError(f"not purging {queue!r}: confirm with --yes"), 2)
    if not typer.confirm(f"Delete every dead letter of {queue!r}?"):
        raise fail(RuntimeError(f"not purged: {queue!r} left as it was"), 1)


def add_commands(
    dlq_app: typer.Typer,
    client_of: Callable[[str | None], tuple[Jobkit, Target]],
    clear_errors: Callable[[], AbstractContextManager[None]],
    fail: Callable[[Exception, int], typer.Exit],
    console: Console,
) -> None:
    """Add `list`, `peek`, `redrive` and `purge` to `jobkit dlq`."""

    @dlq_app.command("list")
    def dlq_list(
        queue: str,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
        as_json_: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
        stack: Stack = None,
    ) -> None:
        """List a queue's dead letters (none is consumed): message id, job, reason, age."""
        client, target = client_of(stack)
        with clear_errors():
            letters = client.dead_letters(queue, limit)
        if as_json_:
            console.print_json(json.dumps([as_json(letter) for letter in letters]))
            return
        console.print(table(letters, f"dead letters of {queue} ({target.description})"))

    @dlq_app.command("peek")
    def dlq_peek(queue: str, message_id: str, stack: Stack = None) -> None:
        """Show one dead letter, its body and attributes (addresses masked), as JSON."""
        client, _ = client_of(stack)
        with clear_errors():
            letter = client.find_dead_letter(queue, message_id)
        if letter is None:
            raise fail(LookupError(f"no message {message_id!r} in the DLQ of {queue!r}"), 1)
        console.print_json(json.dumps(as_json(letter)))

    @dlq_app.command("redrive")
    def dlq_redrive(
        queue: str,
        job_type: Annotated[
            str | None, typer.Option("--type", help="Only dead letters of this job type.")
        ] = None,
        reason: Annotated[
            str | None, typer.Option("--reason", help="Only those whose reason contains this.")
        ] = None,
        job_ids: Annotated[
            list[str] | None, typer.Option("--id", help="Only this job's (repeatable).")
        ] = None,
        limit: Annotated[
            int | None, typer.Option(min=1, max=1000, help="At most this many.")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Say how many would move; move none.")
        ] = False,
        stack: Stack = None,
    ) -> None:
        """Move a queue's dead letters (all, or those that match) back to it; their jobs start
        again with fresh attempts."""
        client, _ = client_of(stack)
        with clear_errors():
            result = client.redrive(
                queue,
                job_type=job_type,
                reason_contains=reason,
                job_ids=job_ids,
                limit=limit,
                dry_run=dry_run,
            )
        console.print(_redrive_line(result))

    @dlq_app.command("purge")
    def dlq_purge(
        queue: str,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
        stack: Stack = None,
    ) -> None:
        """Delete every dead letter of a queue (asks first unless --yes)."""
        client, _ = client_of(stack)
        if not yes:
            _confirm_purge(queue, fail)
        with clear_errors():
            client.purge_dead_letters(queue)
        console.print(f"purged the DLQ of {queue}")
