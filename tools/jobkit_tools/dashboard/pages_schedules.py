"""Schedules: the recurring (cron and rate) schedules with their next runs, pause, resume and
delete them; how many one-time schedules (jobs due later than 15 minutes) are waiting."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template, request, url_for
from werkzeug.wrappers import Response

from jobkit.errors import ConfigurationError
from jobkit.recurring import RecurringSchedule, next_run
from jobkit_tools.dashboard.server import act, client

bp = Blueprint("schedules", __name__)

NEXT_RUNS = 3


def upcoming(schedule: RecurringSchedule, count: int = NEXT_RUNS) -> list[datetime]:
    """The schedule's next runs, by the rules Scheduler fires them with (`jobkit.recurring`):
    each after the one before, a rate counting on from its next run."""
    runs = [schedule.next_run] if schedule.next_run else []
    while runs and len(runs) < count:
        following = next_run(
            schedule.expression,
            schedule.timezone,
            runs[-1],
            created=runs[0],
            start=schedule.start,
            end=schedule.end,
        )
        if following is None:
            break
        runs.append(following)
    return runs


@bp.get("/schedules")
def schedules() -> str:
    jobkit = client()
    try:
        found = jobkit.list_schedules()
        missing = None
    except ConfigurationError as exc:  # a stack without the recurring group
        found, missing = [], str(exc)
    try:
        waiting: int | None = jobkit.count_one_time_schedules()
    except ConfigurationError:
        waiting = None
    return render_template(
        "schedules.html",
        schedules=[(s, upcoming(s)) for s in found],
        missing=missing,
        one_time_waiting=waiting,
    )


def _schedule_action(name: str, verb: str) -> Response:
    def do() -> str:
        jobkit = client()
        if verb == "delete":
            jobkit.delete_schedule(name)
            return f"Schedule {name} deleted (jobs of runs already fired are not affected)."
        changed = (jobkit.pause_schedule if verb == "pause" else jobkit.resume_schedule)(name)
        return f"Schedule {name} is now {changed.state.lower()}."

    return act(do, url_for("schedules.schedules"))


@bp.post("/schedules/<name>/pause")
def pause(name: str) -> Response:
    return _schedule_action(name, "pause")


@bp.post("/schedules/<name>/resume")
def resume(name: str) -> Response:
    return _schedule_action(name, "resume")


@bp.post("/schedules/<name>/delete")
def delete(name: str) -> Response | str:
    if request.form.get("confirmed") == "yes":
        return _schedule_action(name, "delete")
    return render_template(
        "confirm_delete_schedule.html", name=name, back=url_for("schedules.schedules")
    )
