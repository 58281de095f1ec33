"""The overview: every queue's counts and worker, jobs per state, the activity chart; pause and
resume a queue. Three independent reads (queues, state counts, metrics) run side by side."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Blueprint, render_template, url_for
from werkzeug.wrappers import Response

from jobkit.activity import JobActivity
from jobkit.client import Jobkit
from jobkit.errors import ServiceError
from jobkit_tools.dashboard import chart
from jobkit_tools.dashboard.server import act, client

bp = Blueprint("overview", __name__)


@dataclass(frozen=True)
class Activity:
    """The charts, or why there are none (e.g. the credentials may not read CloudWatch)."""

    charts: list[chart.Chart]
    unknown: str | None = None


def activity_of(jobkit: Jobkit) -> Activity:
    try:
        found: JobActivity = jobkit.job_activity()
    except ServiceError as exc:
        return Activity([], f"unknown: CloudWatch metrics could not be read ({exc})")
    return Activity(
        [
            chart.build(found.last_hour, "Last hour (5-minute buckets)"),
            chart.build(found.last_day, "Last day (hourly buckets)"),
        ]
    )


@bp.get("/")
def overview() -> str:
    jobkit = client()
    with ThreadPoolExecutor(3, thread_name_prefix="overview") as pool:
        queues = pool.submit(jobkit.queue_overview)
        counts = pool.submit(jobkit.state_counts)
        activity = pool.submit(activity_of, jobkit)
        return render_template(
            "overview.html",
            queues=queues.result(),
            counts=counts.result(),
            activity=activity.result(),
        )


@bp.post("/queues/<queue>/pause")
def pause(queue: str) -> Response:
    def do() -> str:
        client().pause_queue(queue)
        return f"Queue {queue} paused: its messages wait in SQS; jobs already running finish."

    return act(do, url_for("overview.overview"))


@bp.post("/queues/<queue>/resume")
def resume(queue: str) -> Response:
    def do() -> str:
        client().resume_queue(queue)
        return f"Queue {queue} resumed: its worker receives again."

    return act(do, url_for("overview.overview"))
