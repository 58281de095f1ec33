"""`jobkit` commands on jobs: enqueue, status, list, cancel, run now, retry (one or in bulk)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from jobkit import JobState
from jobkit.admin_calls import BulkResult, apply_each
from jobkit.errors import JobNotFoundError
from jobkit.models import Job
from jobkit.redact import redact
from jobkit_tools.cli_base import (
    StackOption,
    app,
    clear_errors,
    client_for,
    console,
    err,
    fail,
    job_table,
    json_payload,
)

BulkId = Annotated[str | None, typer.Argument(help="One job; without it, every job matching.")]


BulkType = Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")]


BulkQueue = Annotated[str | None, typer.Option(help="Only jobs of this queue.")]


BulkPrefix = Annotated[str | None, typer.Option(help="Only ids starting with this.")]


BulkSince = Annotated[
    datetime | None, typer.Option(help="Only jobs enqueued at or after (ISO, UTC if naive).")
]


BulkUntil = Annotated[
    datetime | None, typer.Option(help="Only jobs enqueued before (ISO, UTC if naive).")
]


BulkLimit = Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")]


BulkAll = Annotated[bool, typer.Option("--all", help="Every matching job (no filter needed).")]


DryRun = Annotated[bool, typer.Option(help="Only say which jobs it would change.")]


Yes = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]


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
    client, _ = client_for(stack)
    data = json_payload(payload)
    with clear_errors():
        job = client.enqueue(job_type, data, job_id=job_id, delay=delay, run_at=run_at)
    due = f" (due {job.run_at:%Y-%m-%d %H:%M:%S %Z})" if job.run_at else ""
    console.print(f"{job.id} {job.state.value}{due}")


@app.command()
def cancel(
    job_id: BulkId = None,
    job_type: BulkType = None,
    queue: BulkQueue = None,
    id_prefix: BulkPrefix = None,
    since: BulkSince = None,
    until: BulkUntil = None,
    limit: BulkLimit = 100,
    every: BulkAll = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    stack: StackOption = None,
) -> None:
    """Cancel a scheduled, queued or retrying job; it will never run. Without an ID, cancel
    every scheduled, queued or retrying job matching the filters (asks first, unless --yes)."""
    client, _ = client_for(stack)
    one, many = client.cancel, client.cancel_many
    filters = _Filters(job_type, queue, id_prefix, _utc(since), _utc(until), limit, every)
    _one_or_many(job_id, one, many, filters, ("cancel", "jobs", "cancelled"), dry_run, yes)


@app.command("run-now")
def run_now(job_id: str, stack: StackOption = None) -> None:
    """Run a scheduled (delayed) job now instead of at its due time."""
    client, _ = client_for(stack)
    with clear_errors():
        job = client.run_now(job_id)
    console.print(f"{job.id} {job.state.value}")


@app.command()
def status(job_id: str, stack: StackOption = None) -> None:
    """Show one job: state, attempts, times, progress, result, last error."""
    client, _ = client_for(stack)
    with clear_errors():
        job = client.get_job(job_id)
    if job is None:
        raise fail(JobNotFoundError(f"no job {job_id!r} in the job log"))
    console.print_json(_masked_json(job))


@app.command()
def jobs(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only jobs of this queue.")] = None,
    id_prefix: Annotated[str | None, typer.Option(help="Only ids starting with this.")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only jobs enqueued at or after (ISO, UTC if naive).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Only jobs enqueued before (ISO, UTC if naive).")
    ] = None,
    updated_after: Annotated[
        datetime | None,
        typer.Option(help="Only jobs changed last at or after (ISO, UTC if naive)."),
    ] = None,
    updated_before: Annotated[
        datetime | None, typer.Option(help="Only jobs changed last before (ISO, UTC if naive).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    page_token: Annotated[
        str | None, typer.Option(help="The next page: the token the previous page printed.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead.")] = False,
    stack: StackOption = None,
) -> None:
    """List jobs, newest first, a page at a time: with more left, the command for the next
    page goes to stderr (with --json, a JSON line {"next_token": ...})."""
    client, target = client_for(stack)
    with clear_errors():
        page = client.find_jobs(
            state,
            job_type,
            limit,
            queue,
            id_prefix=id_prefix,
            created_after=_utc(since),
            created_before=_utc(until),
            updated_after=_utc(updated_after),
            updated_before=_utc(updated_before),
            page_token=page_token,
        )
    if as_json:
        for job in page.jobs:
            print(_masked_json(job))
        if page.next_token:
            err.print(json.dumps({"next_token": page.next_token}), highlight=False, soft_wrap=True)
        return
    console.print(job_table(page.jobs, f"jobs ({target.description})"))
    if page.next_token:
        flags = {
            "--state": state.value if state else None,
            "--type": job_type,
            "--queue": queue,
            "--id-prefix": id_prefix,
            "--since": since.isoformat() if since else None,
            "--until": until.isoformat() if until else None,
            "--updated-after": updated_after.isoformat() if updated_after else None,
            "--updated-before": updated_before.isoformat() if updated_before else None,
            "--limit": str(limit) if limit != 50 else None,
            "--stack": stack,
            "--page-token": page.next_token,
        }
        again = " ".join(f"{flag} {shlex.quote(v)}" for flag, v in flags.items() if v)
        err.print(f"[dim]more jobs: jobkit jobs {escape(again)}[/dim]", soft_wrap=True)


def _utc(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def _masked_json(job: Job) -> str:
    """The job as JSON, its payload with email addresses masked (as in logs)."""
    text = job.model_dump_json()
    return redact(text, limit=len(text))


@app.command()
def retry(
    job_id: BulkId = None,
    job_type: BulkType = None,
    queue: BulkQueue = None,
    id_prefix: BulkPrefix = None,
    since: BulkSince = None,
    until: BulkUntil = None,
    limit: BulkLimit = 100,
    every: BulkAll = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    stack: StackOption = None,
) -> None:
    """Run a failed job again with fresh attempts. Without an ID, every failed job matching
    the filters (asks first, unless --yes)."""
    client, _ = client_for(stack)
    one, many = client.retry, client.retry_many
    filters = _Filters(job_type, queue, id_prefix, _utc(since), _utc(until), limit, every)
    _one_or_many(job_id, one, many, filters, ("retry", "failed jobs", "retried"), dry_run, yes)


@dataclass(frozen=True)
class _Filters:
    job_type: str | None
    queue: str | None
    id_prefix: str | None
    since: datetime | None
    until: datetime | None
    limit: int
    every: bool


def _one_or_many(
    job_id: str | None,
    one: Callable[[str], Job],
    many: Callable[..., BulkResult],
    where: _Filters,
    words: tuple[str, str, str],
    dry_run: bool,
    yes: bool,
) -> None:
    """`one(job_id)`, or `many(...)` over the jobs the filters match, after saying which and
    asking (`words`: the verb, what it acts on, the past tense)."""
    verb, things, done_as = words
    with clear_errors():
        if job_id is not None:
            job = one(job_id)
            console.print(f"{job.id} {job.state.value}")
            return
        filters = (where.job_type, where.queue, where.id_prefix, where.since, where.until)
        _need_filter(where.every, *filters)
        kwargs = {
            "queue": where.queue,
            "id_prefix": where.id_prefix,
            "created_after": where.since,
            "created_before": where.until,
            "limit": where.limit,
        }
        found = many(where.job_type, dry_run=True, **kwargs)
        _confirm(f"{verb} {len(found.matched)} {things}", found.matched, dry_run, yes)
        # on exactly the jobs shown and confirmed, not a second listing
        _report(done_as, apply_each(found.matched, one))


def _need_filter(every: bool, *filters: object) -> None:
    if not every and not any(filters):
        raise fail(
            ValueError(
                "name a job ID, a filter (--type, --queue, --id-prefix, --since, --until) or --all"
            ),
            2,
        )


def _confirm(action: str, ids: list[str], dry_run: bool, yes: bool) -> None:
    """Say which jobs a bulk action reaches; stop there on a dry run, or unless confirmed."""
    for job_id in ids:
        console.print(job_id, highlight=False)
    if dry_run or not ids:
        console.print(f"{'would ' if dry_run else ''}{action}" + ("" if ids else ": none match"))
        raise typer.Exit()
    if not yes and not typer.confirm(f"{action}?", default=False):
        raise fail(ValueError(f"not confirmed: nothing done (pass --yes to {action})"), 2)


def _report(done_as: str, result: BulkResult) -> None:
    console.print(f"{len(result.done)} {done_as}, {len(result.failed)} refused")
    for job_id, why in result.failed:
        err.print(f"{job_id}: {escape(why)}", soft_wrap=True)
    if result.failed:
        raise typer.Exit(1)
