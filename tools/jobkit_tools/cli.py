"""The `jobkit` command: run the local stack, enqueue jobs, read the job log, recover failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import jobkit_tools.cli_jobs
import jobkit_tools.cli_openapi  # (registers `jobkit openapi`)
import jobkit_tools.cli_schedules  # (registers its commands)
import jobkit_tools.dashboard.command  # noqa: F401  (registers `jobkit dashboard`)
from jobkit_tools import dlq_commands, queue_view, scaffold
from jobkit_tools.cli_base import (
    StackOption,
    app,
    clear_errors,
    client_for,
    console,
    dlq_app,
    fail,
    load_types,
    new_app,
)

dlq_commands.add_commands(dlq_app, client_for, clear_errors, fail, console)
queue_view.add_command(app, client_for, clear_errors, console)


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


@app.command("listing-status")
def listing_status(
    listing_id: str,
    version: Annotated[str, typer.Option("--version", help="The listing version published.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    stack: StackOption = None,
) -> None:
    """Show a listing version's syndication: per platform, state, attempts, partner id, error."""
    from jobkit_apps.syndication import listing_status as read_status

    client, _ = client_for(stack)
    with clear_errors():
        found = read_status(listing_id, version, client=client)
    if as_json:
        console.print_json(found.model_dump_json())
        return
    if found.publish_state is None:
        raise fail(LookupError(f"listing {listing_id!r} version {version!r} was not published"))
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
def schema(job_type: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the JSON Schema of a job type's payload (all types without an argument)."""
    from jobkit.jobs import export_schemas, get_job_type

    load_types()
    with clear_errors():
        text = (
            json.dumps(get_job_type(job_type).json_schema(), indent=2)
            if job_type
            else export_schemas()
        )
    console.print_json(text)


@new_app.command("worker")
def new_worker(
    name: str,
    root: Annotated[Path, typer.Option("--root", help="The project's folder.")] = Path("."),
) -> None:
    """Add a worker: functions/NAME/, its block in template.yaml and a first test."""
    try:
        written = scaffold.new_worker(root, name)
    except scaffold.ScaffoldError as exc:
        raise fail(exc, 2) from None
    for path in written:
        console.print(f"wrote {path}")
    console.print(
        f"next: declare your job types in functions/{name}/{name}_jobs.py, write their "
        f"processors in functions/{name}/{name}_worker.py, run `make test`, then `jobkit dev`"
    )


def main() -> None:
    app()
