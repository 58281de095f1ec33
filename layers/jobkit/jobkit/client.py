"""The producer API: enqueue jobs, read the job log, retry and redrive failures, declare
recurring schedules.

`Jobkit` is one handle on all of it; its calls live by kind in `jobkit.producer_calls`
(enqueue), `jobkit.admin_calls` (jobs already enqueued), `jobkit.dead_letter_calls`
(dead-letter queues), `jobkit.overview` (queue and state counts), `jobkit.schedule_calls`
(recurring schedules) and `jobkit.activity` (job metrics, where the workers log). Every
error they raise is a `JobkitError`: the adapters they call turn AWS failures into
`ServiceError`s.
"""

from __future__ import annotations

from jobkit.activity import ActivityCalls
from jobkit.admin_calls import AdminCalls, RedriveResult
from jobkit.dead_letter_calls import DeadLetter, DeadLetterCalls
from jobkit.overview import JobCounts, OverviewCalls, QueueOverview
from jobkit.producer_calls import (
    MAX_DELAY,
    Delay,
    EnqueueManyResult,
    EnqueueOutcome,
    EnqueueRequest,
    ProducerCalls,
    due_time,
)
from jobkit.schedule_calls import ScheduleCalls
from jobkit.settings import Settings, get_settings
from jobkit.store import JobLog

__all__ = [
    "MAX_DELAY",
    "DeadLetter",
    "Delay",
    "EnqueueManyResult",
    "EnqueueOutcome",
    "EnqueueRequest",
    "JobCounts",
    "Jobkit",
    "QueueOverview",
    "RedriveResult",
    "default_client",
    "due_time",
]


class Jobkit(
    ProducerCalls, DeadLetterCalls, AdminCalls, OverviewCalls, ScheduleCalls, ActivityCalls
):
    """A producer's handle on the stack. Cheap to create; clients are shared per process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.log = JobLog(self.settings.require_table())


_default: Jobkit | None = None


def default_client() -> Jobkit:
    """The process-wide client built from the environment's settings."""
    global _default
    if _default is None:
        _default = Jobkit()
    return _default
