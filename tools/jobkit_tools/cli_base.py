"""What every `jobkit` command shares: the typer apps, the console, finding the stack, and
the one-line errors."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobkit import JobkitError
from jobkit.client import Jobkit
from jobkit.errors import InvalidRequestError
from jobkit.models import Job
from jobkit_tools.discover import StackNotFoundError, Target, find, project_root

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter queues.")
app.add_typer(dlq_app, name="dlq")
schedules_app = typer.Typer(no_args_is_help=True, help="Recurring (cron and rate) schedules.")
app.add_typer(schedules_app, name="schedules")
new_app = typer.Typer(no_args_is_help=True, help="Scaffold a new part of the project.")
app.add_typer(new_app, name="new")
console = Console()
err = Console(stderr=True)

StackOption = Annotated[
    str | None,
    typer.Option(
        "--stack", help="Deployed CloudFormation stack (default: local stack, then jobkit-dev)."
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"jobkit {importlib.metadata.version('jobkit')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Serverless background jobs for AWS: the local stack, jobs, schedules and dead letters."""


def load_types() -> None:
    """Declare the built-in job types, each worker's in `functions/<name>/<name>_jobs.py` of the
    project this folder is in (here or above), and any listed in JOBKIT_TYPES (comma-separated
    modules)."""
    for jobs in sorted((project_root() / "functions").glob("*/*_jobs.py")):
        if str(jobs.parent.resolve()) not in sys.path:
            sys.path.append(str(jobs.parent.resolve()))
        importlib.import_module(jobs.stem)
    modules = [
        "jobkit_apps.email",
        "jobkit_apps.nightly",
        "jobkit_apps.reminders",
        "jobkit_apps.syndication",
        *filter(None, os.environ.get("JOBKIT_TYPES", "").split(",")),
    ]
    for module in modules:
        importlib.import_module(module.strip())


def client_for(stack: str | None) -> tuple[Jobkit, Target]:
    load_types()
    try:
        target = find(stack)
    except StackNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return Jobkit(target.settings), target


def fail(exc: Exception, code: int = 1) -> typer.Exit:
    """Say what went wrong on one line of stderr; the exit code is 2 for input that is wrong
    (the same command fails again), 1 for anything else."""
    text = " ".join(str(exc).split())
    err.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    return typer.Exit(code)


def json_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(ValueError(f"--payload is not valid JSON: {exc}"), 2) from None


@contextmanager
def clear_errors() -> Iterator[None]:
    """A jobkit error ends the command with its message, never a traceback."""
    try:
        yield
    except InvalidRequestError as exc:
        raise fail(exc, 2) from None
    except JobkitError as exc:
        raise fail(exc) from None


def job_table(jobs: list[Job], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "type", "state", "attempts", "updated", "error"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(
            job.id,
            job.type,
            job.state.value,
            f"{job.attempts}/{job.max_attempts}",
            job.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            (job.error or "")[:80],
        )
    return table
