"""The jobs page: the job log filtered (queue, type, state, created time, id prefix), newest
first, a page at a time; retry or cancel the selected jobs or every one matching, after a
confirmation that says how many (the dry run of `retry_many` / `cancel_many`, or the ids
selected, acted on with `apply_each` exactly as confirmed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from jobkit.admin_calls import apply_each
from jobkit.client import Jobkit
from jobkit.errors import InvalidRequestError
from jobkit.jobs import registered_job_types
from jobkit.models import Job
from jobkit_tools.dashboard.server import client

bp = Blueprint("jobs", __name__)

PAGE_SIZE = 50
BULK_LIMIT = 1000
_ACTIONS = {"retry": ("Retry", "retried", "failed"), "cancel": ("Cancel", "cancelled", "")}


@dataclass(frozen=True)
class Filters:
    """The list's filters as the form sends them (text; empty: no filter)."""

    queue: str = ""
    type: str = ""
    state: str = ""
    id_prefix: str = ""
    created_after: str = ""  # `datetime-local` input: YYYY-MM-DDTHH:MM, UTC
    created_before: str = ""

    @classmethod
    def of(cls, form: MultiDict[str, str]) -> Filters:
        return cls(**{name: form.get(name, "").strip() for name in cls.__dataclass_fields__})

    def query(self) -> dict[str, Any]:
        """The filters that are set, for a URL."""
        return {name: value for name, value in asdict(self).items() if value}


def utc_moment(text: str, label: str) -> datetime | None:
    """A `datetime-local` value (or ISO text), read as UTC; `InvalidRequestError` if it is
    not a time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            f"{label} {text!r} is not a time (YYYY-MM-DD HH:MM, UTC)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def find(jobkit: Jobkit, where: Filters, token: str | None) -> tuple[list[Job], str | None]:
    """A page of jobs matching the filters, and the token of the next page (None: last)."""
    args: dict[str, Any] = {
        "id_prefix": where.id_prefix or None,
        "created_after": utc_moment(where.created_after, "created after"),
        "created_before": utc_moment(where.created_before, "created before"),
    }
    state, job_type, queue = where.state or None, where.type or None, where.queue or None
    page = jobkit.find_jobs(state, job_type, PAGE_SIZE, queue, page_token=token, **args)
    return page.jobs, page.next_token


@bp.get("/jobs")
def jobs() -> str:
    where = Filters.of(request.args)
    token = request.args.get("page_token") or None
    found: list[Job] = []
    next_token: str | None = None
    error = None
    try:
        found, next_token = find(client(), where, token)
    except InvalidRequestError as exc:  # a bad filter: say so above the form
        error = str(exc)
    types = registered_job_types()
    return render_template(
        "jobs.html",
        jobs=found,
        where=where,
        next_token=next_token,
        paged=token is not None,
        error=error,
        job_types=sorted(types),
        queues=sorted({t.queue for t in types.values()}),
    )


@bp.post("/jobs/bulk")
def bulk() -> Response | str:
    """First the confirmation (how many, which), then, confirmed, the action on those ids."""
    form = request.form
    scope = request.args.get("scope", "selected")  # the "every job matching" buttons say so
    action = form.get("action", "")
    if action not in _ACTIONS:
        raise InvalidRequestError(f"unknown action {action!r} (retry or cancel)")
    where = Filters.of(form)
    back = url_for("jobs.jobs", **where.query())
    jobkit = client()
    one = jobkit.retry if action == "retry" else jobkit.cancel
    verb, done_as, _ = _ACTIONS[action]
    if form.get("confirmed") == "yes":
        result = apply_each(form.getlist("id"), one)
        flash(f"{len(result.done)} {done_as}, {len(result.failed)} refused.", "done")
        for job_id, why in result.failed[:20]:
            flash(f"{job_id}: {why}", "error")
        return redirect(back, 303)
    if scope == "matching":
        many = jobkit.retry_many if action == "retry" else jobkit.cancel_many
        preview = many(
            where.type or None,
            queue=where.queue or None,
            id_prefix=where.id_prefix or None,
            created_after=utc_moment(where.created_after, "created after"),
            created_before=utc_moment(where.created_before, "created before"),
            limit=BULK_LIMIT,
            dry_run=True,
        )
    else:
        preview = apply_each(form.getlist("id"), one, dry_run=True)
    if not preview.matched:
        flash(f"Nothing to {action}: no job selected or matching.", "error")
        return redirect(back, 303)
    return render_template(
        "confirm_jobs.html",
        action=action,
        verb=verb,
        ids=preview.matched,
        scope=scope,
        where=where,
        back=back,
    )
