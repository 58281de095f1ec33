"""What a processor gets: the job's `JobContext` (time left, heartbeats, progress), and the
lease a claim holds a job for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobkit.errors import InvalidRequestError
from jobkit.jobs import JobType

Processor = Callable[[Any, "JobContext"], Any]
# `admit(payload) -> seconds to wait, or None to go ahead`: asked before the claim.
Admission = Callable[[Any], float | None]

# A claim's lease runs this long past the job's timeout: time for the outcome write (retried
# in-process while it lasts) after a processor that used all of its own.
OUTCOME_GRACE_S = 5.0


def lease_seconds(job_type: JobType) -> float:
    """How long a claim (or a heartbeat) holds a job of `job_type`."""
    return job_type.timeout + OUTCOME_GRACE_S


@dataclass
class JobContext:
    """What a processor knows about the run it is in."""

    job_id: str
    job_type: str
    attempt: int
    max_attempts: int
    deadline: float  # time.monotonic() by which the processor should be done
    _beat: Callable[[Any], float] = field(repr=False)

    def remaining_time(self) -> float:
        """Seconds left before the job's timeout (moved on by each heartbeat)."""
        return max(self.deadline - time.monotonic(), 0.0)

    def heartbeat(self) -> None:
        """Tell jobkit this attempt is alive and needs another full timeout: the lease in the
        log and the message's visibility are extended, so no other worker takes the job over.
        One conditional write and one SQS request: call it every so often (well within the
        timeout), not for every item. Raises `LeaseLostError` when this attempt no longer
        holds the job (stop: another attempt has it)."""
        self.deadline = self._beat(None)

    def report_progress(self, progress: Any) -> None:
        """Record progress in the job log (shown by `jobkit status`); a heartbeat too. One
        write per call: report milestones, not ticks."""
        if progress is None:
            raise InvalidRequestError(
                'progress must not be None (report a value, e.g. {"done": 3})'
            )
        self.deadline = self._beat(progress)
