"""The `jobkit` command: run the local stack, enqueue jobs, read the job log, recover failures."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobkit import JobkitError, JobState
from jobkit.client import Jobkit
from jobkit.errors import InvalidRequestError, JobNotFoundError
from jobkit.models import Job
from jobkit.recurring import RecurringSchedule
from jobkit_tools import scaffold
from jobkit_tools.discover import StackNotFoundError, Target, find

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


def _load_types() -> None:
    """Declare the built-in job types, each worker's in `functions/<name>/<name>_jobs.py` of the
    project in this folder, and any listed in JOBKIT_TYPES (comma-separated modules)."""
    for jobs in sorted(Path("functions").glob("*/*_jobs.py")):
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


def _client(stack: str | None) -> tuple[Jobkit, Target]:
    _load_types()
    try:
        target = find(stack)
    except StackNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return Jobkit(target.settings), target


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    """Say what went wrong on one line of stderr; the exit code is 2 for input that is wrong
    (the same command fails again), 1 for anything else."""
    text = " ".join(str(exc).split())
    err.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    return typer.Exit(code)


def _json_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(ValueError(f"--payload is not valid JSON: {exc}"), 2) from None


@contextmanager
def _clear_errors() -> Iterator[None]:
    """A jobkit error ends the command with its message, never a traceback."""
    try:
        yield
    except InvalidRequestError as exc:
        raise _fail(exc, 2) from None
    except JobkitError as exc:
        raise _fail(exc) from None


def _job_table(jobs: list[Job], title: str) -> Table:
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


@app.command()
def dev(
    demo: Annotated[
        bool, typer.Option(help="Run the demo workload and exit with its verdict.")
    ] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Template parameter override KEY=VALUE.")
    ] = None,
    logs: Annotated[
        str | None,
        typer.Option(
            help="Function logs: 'console' or 'file' (.jobkit/logs/); default: file with --demo."
        ),
    ] = None,
) -> None:
    """Run template.yaml locally on moto's server, with each function in its own process."""
    from jobkit_tools.local import run_dev

    overrides = dict(p.split("=", 1) for p in param or [])
    console_logs = None if logs is None else logs == "console"
    raise typer.Exit(run_dev(demo=demo, parameter_overrides=overrides, console_logs=console_logs))


@app.command()
def enqueue(
    job_type: Annotated[str, typer.Argument(help="Job type name, e.g. email.send_invite.")],
    payload: Annotated[str, typer.Option(help="Payload as JSON.")],
    job_id: Annotated[str | None, typer.Option("--id", help="Job id (deduplicates).")] = None,
    delay: Annotated[float | None, typer.Option(help="Seconds before the job may run.")] = None,
    run_at: Annotated[
        datetime | None,
        typer.Option(
            "--run-at",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
            help="When the job may run, with its UTC offset: 2026-12-01T09:00:00+0100.",
        ),
    ] = None,
    stack: StackOption = None,
) -> None:
    """Enqueue one job (now, after --delay, or at --run-at)."""
    client, _ = _client(stack)
    data = _json_payload(payload)
    with _clear_errors():
        job = client.enqueue(job_type, data, job_id=job_id, delay=delay, run_at=run_at)
    due = f" (due {job.run_at:%Y-%m-%d %H:%M:%S %Z})" if job.run_at else ""
    console.print(f"{job.id} {job.state.value}{due}")


@app.command()
def cancel(job_id: str, stack: StackOption = None) -> None:
    """Cancel a scheduled, queued or retrying job; it will never run."""
    client, _ = _client(stack)
    with _clear_errors():
        job = client.cancel(job_id)
    console.print(f"{job.id} {job.state.value}")


@app.command("run-now")
def run_now(job_id: str, stack: StackOption = None) -> None:
    """Run a scheduled (delayed) job now instead of at its due time."""
    client, _ = _client(stack)
    with _clear_errors():
        job = client.run_now(job_id)
    console.print(f"{job.id} {job.state.value}")


@app.command()
def status(job_id: str, stack: StackOption = None) -> None:
    """Show one job: state, attempts, times, progress, result, last error."""
    client, _ = _client(stack)
    with _clear_errors():
        job = client.get_job(job_id)
    if job is None:
        raise _fail(JobNotFoundError(f"no job {job_id!r} in the job log"))
    console.print_json(job.model_dump_json(exclude={"payload"}))


@app.command("listing-status")
def listing_status(
    listing_id: str,
    version: Annotated[str, typer.Option("--version", help="The listing version published.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    stack: StackOption = None,
) -> None:
    """Show a listing version's syndication: per platform, state, attempts, partner id, error."""
    from jobkit_apps.syndication import listing_status as read_status

    client, _ = _client(stack)
    with _clear_errors():
        found = read_status(listing_id, version, client=client)
    if as_json:
        console.print_json(found.model_dump_json())
        return
    if found.publish_state is None:
        raise _fail(LookupError(f"listing {listing_id!r} version {version!r} was not published"))
    table = Table(title=f"{listing_id} v{version} (publish: {found.publish_state})")
    for column in ("platform", "state", "attempts", "partner id", "error"):
        table.add_column(column)
    for row in found.platforms:
        table.add_row(
            row.platform,
            row.state,
            str(row.attempts),
            row.response_id or "",
            (row.error or "")[:120],
        )
    console.print(table)


@app.command()
def jobs(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    stack: StackOption = None,
) -> None:
    """List jobs, newest first."""
    client, target = _client(stack)
    with _clear_errors():
        found = client.list_jobs(state, job_type, limit)
    console.print(_job_table(found, f"jobs ({target.description})"))


@app.command()
def retry(job_id: str, stack: StackOption = None) -> None:
    """Run a failed job again with fresh attempts."""
    client, _ = _client(stack)
    with _clear_errors():
        job = client.retry(job_id)
    console.print(f"{job.id} {job.state.value}")


@app.command()
def schema(job_type: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the JSON Schema of a job type's payload (all types without an argument)."""
    from jobkit.jobs import export_schemas, get_job_type

    _load_types()
    with _clear_errors():
        text = (
            json.dumps(get_job_type(job_type).json_schema(), indent=2)
            if job_type
            else export_schemas()
        )
    console.print_json(text)


def _schedule_table(found: list[RecurringSchedule]) -> Table:
    table = Table(title="recurring schedules")
    columns = ("name", "expression", "timezone", "job type", "state", "start (UTC)", "end (UTC)")
    for column in (*columns, "next run (UTC)"):
        table.add_column(column, overflow="fold")

    def moment(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"

    for s in found:
        table.add_row(
            s.name,
            s.expression,
            s.timezone,
            s.job_type,
            s.state,
            moment(s.start),
            moment(s.end),
            moment(s.next_run),
        )
    return table


_MOMENT_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]


@schedules_app.command("create")
def schedules_create(
    name: Annotated[str, typer.Argument(help="Schedule name; the same name again updates it.")],
    cron: Annotated[
        str, typer.Argument(help="AWS cron, six fields ('0 2 * * ? *'), or rate(...).")
    ],
    job_type: Annotated[str, typer.Argument(help="Job type each run enqueues.")],
    payload: Annotated[str, typer.Option(help="Payload as JSON.")] = "{}",
    timezone: Annotated[str, typer.Option(help="IANA timezone of the expression.")] = "UTC",
    paused: Annotated[
        bool | None,
        typer.Option(
            "--paused/--enabled",
            help="Make it paused or enabled; neither: a new schedule is enabled and an "
            "existing one keeps its state.",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            formats=_MOMENT_FORMATS,
            help="No run before this, with its UTC offset: 2026-12-01T09:00:00+0100.",
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(
            formats=_MOMENT_FORMATS,
            help="No run after this, with its UTC offset: 2027-06-30T18:00:00+0200.",
        ),
    ] = None,
    stack: StackOption = None,
) -> None:
    """Run a job type on a cron or rate schedule (the same name again updates it)."""
    client, _ = _client(stack)
    data = _json_payload(payload)
    enabled = None if paused is None else not paused
    with _clear_errors():
        made = client.schedule(
            name, cron, job_type, data, timezone=timezone, enabled=enabled, start=start, end=end
        )
    console.print(_schedule_table([made]))


@schedules_app.command("list")
def schedules_list(stack: StackOption = None) -> None:
    """Every recurring schedule, with its next run."""
    client, _ = _client(stack)
    with _clear_errors():
        console.print(_schedule_table(client.list_schedules()))


@schedules_app.command("pause")
def schedules_pause(name: str, stack: StackOption = None) -> None:
    """Stop a schedule firing until it is resumed."""
    client, _ = _client(stack)
    with _clear_errors():
        console.print(_schedule_table([client.pause_schedule(name)]))


@schedules_app.command("resume")
def schedules_resume(name: str, stack: StackOption = None) -> None:
    """Let a paused schedule fire again."""
    client, _ = _client(stack)
    with _clear_errors():
        console.print(_schedule_table([client.resume_schedule(name)]))


@schedules_app.command("delete")
def schedules_delete(name: str, stack: StackOption = None) -> None:
    """Delete a schedule (jobs of runs already fired are not affected)."""
    client, _ = _client(stack)
    with _clear_errors():
        client.delete_schedule(name)
    console.print(f"{name} deleted")


@dlq_app.command("redrive")
def dlq_redrive(queue: str, stack: StackOption = None) -> None:
    """Move a queue's dead letters back to it; their jobs start again with fresh attempts."""
    client, _ = _client(stack)
    with _clear_errors():
        result = client.redrive(queue)
    if result.moved is None:
        console.print(f"move task started: {result.task_handle}")
    else:
        console.print(f"moved {result.moved} messages back to {queue}")


@new_app.command("worker")
def new_worker(
    name: str,
    root: Annotated[Path, typer.Option("--root", help="The project's folder.")] = Path("."),
) -> None:
    """Add a worker: functions/NAME/, its block in template.yaml and a first test."""
    try:
        written = scaffold.new_worker(root, name)
    except scaffold.ScaffoldError as exc:
        raise _fail(exc, 2) from None
    for path in written:
        console.print(f"wrote {path}")
    console.print(
        f"next: declare your job types in functions/{name}/{name}_jobs.py, write their "
        f"processors in functions/{name}/{name}_worker.py, run `make test`, then `jobkit dev`"
    )


def main() -> None:
    app()
