"""Dead letters: a queue's DLQ (read without consuming it: `Jobkit.dead_letters`); redrive the
selected ones, those matching a filter, or up to a limit, after a dry run says how many; purge
after a confirmation. Not refreshed by itself: every look counts as a receive of each message."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from jobkit.errors import InvalidRequestError
from jobkit.jobs import registered_job_types
from jobkit_tools.dashboard.server import act, client

bp = Blueprint("dead_letters", __name__)

SHOWN = 50


def _limit(text: str, default: int | None) -> int | None:
    if not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidRequestError(f"the limit is a whole number, not {text!r}") from None


@bp.get("/dead-letters")
def dead_letters() -> str:
    jobkit = client()
    queues = [q for q in jobkit.queue_overview() if q.dead_letters is not None]
    chosen = request.args.get("queue") or (queues[0].queue if queues else "")
    shown = _limit(request.args.get("limit", ""), SHOWN) or SHOWN
    letters = jobkit.dead_letters(chosen, shown) if chosen else []
    types = sorted(n for n, t in registered_job_types().items() if t.queue == chosen)
    return render_template(
        "dead_letters.html",
        queues=queues,
        queue=chosen,
        letters=letters,
        shown=shown,
        job_types=types,
    )


def _redrive_args(form: Any) -> dict[str, Any]:
    """The redrive the form asks for: the selected jobs, a filter, or a limit."""
    mode, limit = form.get("mode", ""), form.get("limit", "")
    if mode == "selected":
        ids = form.getlist("job_id")
        if not ids:
            raise InvalidRequestError("select the dead letters to redrive first")
        return {"job_ids": ids}
    if mode == "filter":
        job_type = form.get("job_type") or None
        reason = form.get("reason_contains") or None
        if job_type is None and reason is None:
            raise InvalidRequestError("give a job type or a reason text to filter on")
        return {"job_type": job_type, "reason_contains": reason, "limit": _limit(limit, None)}
    if mode == "limit":
        if not limit.strip():
            raise InvalidRequestError("give how many dead letters to redrive")
        return {"limit": _limit(limit, None)}
    raise InvalidRequestError(f"unknown redrive {mode!r} (selected, filter or limit)")


@bp.post("/dead-letters/<queue>/redrive")
def redrive(queue: str) -> Response | str:
    back = url_for("dead_letters.dead_letters", queue=queue)
    form = request.form
    if form.get("confirmed") == "yes":

        def do() -> str:
            done = client().redrive(queue, **_redrive_args(form))
            left = f", {done.left} left in the DLQ" if done.left is not None else ""
            moved = "all of them" if done.moved is None else f"{done.moved}"
            return f"Redrive of {queue}: {moved} moved back{left}."

        return act(do, back)
    try:
        preview = client().redrive(queue, **_redrive_args(form), dry_run=True)
    except InvalidRequestError as exc:  # a bad form: say why on the page it came from
        flash(str(exc), "error")
        return redirect(back, 303)
    return render_template(
        "confirm_redrive.html", queue=queue, form=form, matched=preview.matched, back=back
    )


@bp.post("/dead-letters/<queue>/purge")
def purge(queue: str) -> Response | str:
    back = url_for("dead_letters.dead_letters", queue=queue)
    if request.form.get("confirmed") == "yes":

        def do() -> str:
            client().purge_dead_letters(queue)
            return f"Dead-letter queue of {queue} purged (SQS takes up to a minute)."

        return act(do, back)
    depth = client().queue_overview([queue])[0].dead_letters
    return render_template("confirm_purge.html", queue=queue, depth=depth, back=back)
