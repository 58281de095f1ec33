"""`jobkit schedules`: recurring (cron and rate) schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from jobkit.recurring import RecurringSchedule
from jobkit_tools.cli_base import (
    StackOption,
    clear_errors,
    client_for,
    console,
    json_payload,
    schedules_app,
)


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
    client, _ = client_for(stack)
    data = json_payload(payload)
    enabled = None if paused is None else not paused
    with clear_errors():
        made = client.schedule(
            name, cron, job_type, data, timezone=timezone, enabled=enabled, start=start, end=end
        )
    console.print(_schedule_table([made]))


@schedules_app.command("list")
def schedules_list(stack: StackOption = None) -> None:
    """Every recurring schedule, with its next run."""
    client, _ = client_for(stack)
    with clear_errors():
        console.print(_schedule_table(client.list_schedules()))


@schedules_app.command("pause")
def schedules_pause(name: str, stack: StackOption = None) -> None:
    """Stop a schedule firing until it is resumed."""
    client, _ = client_for(stack)
    with clear_errors():
        console.print(_schedule_table([client.pause_schedule(name)]))


@schedules_app.command("resume")
def schedules_resume(name: str, stack: StackOption = None) -> None:
    """Let a paused schedule fire again."""
    client, _ = client_for(stack)
    with clear_errors():
        console.print(_schedule_table([client.resume_schedule(name)]))


@schedules_app.command("delete")
def schedules_delete(name: str, stack: StackOption = None) -> None:
    """Delete a schedule (jobs of runs already fired are not affected)."""
    client, _ = client_for(stack)
    with clear_errors():
        client.delete_schedule(name)
    console.print(f"{name} deleted")
