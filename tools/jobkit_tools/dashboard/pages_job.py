"""A job's page: its payload (addresses masked), state, attempts, lease, progress, result,
error, a timeline of its times, its schedule; retry, cancel, run now; its log lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, abort, render_template, request, url_for
from werkzeug.wrappers import Response

from jobkit.errors import JobkitError, JobNotFoundError, ServiceError
from jobkit.models import SQS_MAX_DELAY_SECONDS, Job, JobState, check_job_id, utcnow
from jobkit.recurring import RecurringSchedule
from jobkit_tools.dashboard import job_logs
from jobkit_tools.dashboard.server import act, client, stack

bp = Blueprint("job", __name__)


@dataclass(frozen=True)
class Moment:
    label: str
    at: datetime
    future: bool


@dataclass(frozen=True)
class Logs:
    """Where the job's lines are: a page of the dashboard, Insights links, or why neither."""

    local: bool
    links: list[tuple[str, str]]  # (function, Logs Insights URL)
    unknown: str | None = None


def timeline(job: Job) -> list[Moment]:
    """The job's times, in order (the future ones are what it waits for)."""
    now = utcnow()
    times = [
        ("enqueued", job.created_at),
        ("due", job.run_at),
        ("started (last attempt)", job.started_at),
        ("lease ends", job.lease_until if job.state == JobState.RUNNING else None),
        ("next attempt", job.next_attempt_at if job.state == JobState.RETRYING else None),
        ("finished", job.finished_at),
        ("last change", job.updated_at),
    ]
    found = [Moment(label, at, at > now) for label, at in times if at is not None]
    return sorted(found, key=lambda m: m.at)


def waits_on(job: Job) -> str | None:
    """How a scheduled job waits for its due time (as `enqueue` decides it)."""
    if job.state != JobState.SCHEDULED or job.run_at is None:
        return None
    if job.run_at - job.created_at > timedelta(seconds=SQS_MAX_DELAY_SECONDS):
        return "a one-time EventBridge Scheduler schedule sends it a minute before it is due"
    return "its message waits in SQS (DelaySeconds) until it is due"


def recurring_of(job: Job) -> RecurringSchedule | None:
    """The recurring schedule whose run this job is (its id is `<name>@<time>`), if any."""
    name, at, _ = job.id.partition("@")
    if not at:
        return None
    try:
        return client().get_schedule(name)
    except JobkitError:  # not a schedule's run, no recurring group, or not readable
        return None


def logs_of(job: Job) -> Logs:
    if stack().local:
        return Logs(local=True, links=[])
    try:
        found = client().worker_logs(job.queue)
    except ServiceError as exc:
        return Logs(False, [], f"unknown: the worker's log group could not be found ({exc})")
    links = [(w.function, job_logs.insights_url(w.region, [w.log_group], job.id)) for w in found]
    return Logs(False, links, None if links else "unknown: no worker reads this queue")


def _job(job_id: str) -> Job:
    job = client().get_job(check_job_id(job_id))
    if job is None:
        raise JobNotFoundError(f"no job {job_id!r} in the job log")
    return job


@bp.get("/job")
def detail() -> str:
    job = _job(request.args.get("id", ""))
    return render_template(
        "job.html",
        job=job,
        timeline=timeline(job),
        waits_on=waits_on(job),
        recurring=recurring_of(job),
        logs=logs_of(job),
    )


@bp.get("/job/logs")
def logs() -> str:
    job_id = check_job_id(request.args.get("id", ""))
    if not stack().local:
        abort(404, "On a deployed stack a job's lines are in CloudWatch Logs (see its page).")
    log_dir = stack().log_dir
    lines = job_logs.local_lines(log_dir, job_id) if log_dir and log_dir.is_dir() else []
    return render_template("job_logs.html", job_id=job_id, lines=lines, log_dir=log_dir)


def _job_action(name: str, past: str) -> Response:
    job_id = request.form.get("id", "")

    def do() -> str:
        job = getattr(client(), name)(job_id)
        return f"Job {job.id} {past}: now {job.state.value}."

    return act(do, url_for("job.detail", id=job_id))


@bp.post("/job/retry")
def retry() -> Response:
    return _job_action("retry", "retried")


@bp.post("/job/cancel")
def cancel() -> Response:
    return _job_action("cancel", "cancelled")


@bp.post("/job/run-now")
def run_now() -> Response:
    return _job_action("run_now", "released to run now")
