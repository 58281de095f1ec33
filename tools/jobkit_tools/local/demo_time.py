"""The demo's time part: delayed jobs, a cron schedule that fans out, reminder sequences.

- 5 welcome emails delayed 2 to 10 s: each must start at or after its due time.
- A schedule made at run time, `cron(* * * * ? *)`, enqueuing `nightly.fan_out` over 25
  accounts: its next run (named by its scheduled time) must succeed with its progress at 25/25,
  and its 25 children must succeed. It is deleted when the demo ends.
- Three reminder sequences with offsets of seconds: one reminds three times and completes; one
  has its documents completed after the first reminder and completes without a second; one is
  cancelled at once and sends nothing. The second one's next step is due an hour later and
  run at once (`run_now`) only after the documents are marked complete: the check depends on
  that order, never on how fast the demo's loop notices the first reminder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit.client import Jobkit
    from jobkit.models import Job

DELAYS = (2, 4, 6, 8, 10)  # seconds
ACCOUNTS = 25
REMINDED_OFFSETS = (3, 6, 9)  # seconds: three reminders
# documents complete in between: one reminder. The second step waits an hour, until the demo
# has marked the documents complete and runs it now.
COMPLETED_OFFSETS = (3, 3600)


@dataclass
class TimeWorkload:
    run: str
    delayed: dict[str, datetime] = field(default_factory=dict)  # job id -> due time
    schedule: str = ""
    cron_run: str = ""  # the job id of the schedule's next run
    reminded: str = ""  # applicant ids
    completed: str = ""
    cancelled: str = ""
    marked_complete: bool = False
    released: bool = False  # the completed sequence's second step was run now

    @property
    def applicants(self) -> tuple[str, str, str]:
        return self.reminded, self.completed, self.cancelled

    def address(self, applicant: str) -> str:
        return f"{applicant}@example.com"

    def expected_emails(self) -> int:
        return len(DELAYS) + len(REMINDED_OFFSETS) + 1


def start(producer: Jobkit, run: str) -> TimeWorkload:
    """Enqueue the delayed jobs, make the schedule, start the sequences."""
    from jobkit_apps.applications import put_application
    from jobkit_apps.email import SEND_WELCOME
    from jobkit_apps.nightly import FAN_OUT
    from jobkit_apps.reminders import cancel_sequence, start_sequence

    work = TimeWorkload(run)
    for seconds in DELAYS:
        job_id = f"demo-{run}-delayed-{seconds}s"
        to = f"delayed-{run}-{seconds}@example.com"
        job = producer.enqueue(SEND_WELCOME, {"to": to}, job_id=job_id, delay=seconds)
        assert job.run_at is not None
        work.delayed[job_id] = job.run_at

    work.schedule = f"demo-{run}-every-minute"
    made = producer.schedule(
        work.schedule, "cron(* * * * ? *)", FAN_OUT, {"accounts": ACCOUNTS, "chunk": 10}
    )
    assert made.next_run is not None
    work.cron_run = made.job_id(made.next_run)

    work.reminded, work.completed, work.cancelled = (
        f"demo-{run}-{kind}" for kind in ("reminded", "completed", "cancelled")
    )
    plans = {work.reminded: REMINDED_OFFSETS, work.completed: COMPLETED_OFFSETS}
    for applicant in work.applicants:
        put_application(
            applicant,
            email=work.address(applicant),
            name="Ada",
            missing_documents=["passport", "proof of address"],
            upload_url="https://app.example.com/documents",
        )
        offsets = [timedelta(seconds=s) for s in plans.get(applicant, (3,))]
        start_sequence(applicant, offsets=offsets, send_time=None, client=producer)
    cancel_sequence(work.cancelled, client=producer)
    return work


def tick(producer: Jobkit, work: TimeWorkload, sent: dict[str, int]) -> None:
    """Act on what happened: complete the documents once the first reminder went out, then
    run the sequence's next step (due an hour later) at once."""
    from jobkit.errors import InvalidStateError
    from jobkit.models import JobState
    from jobkit_apps.applications import mark_documents_complete
    from jobkit_apps.reminders import get_sequence

    if not work.marked_complete and sent.get(work.address(work.completed), 0) >= 1:
        mark_documents_complete(work.completed)
        work.marked_complete = True
    if work.marked_complete and not work.released:
        sequence = get_sequence(work.completed)
        if sequence is None or sequence.step < 2 or sequence.job_id is None:
            return  # step 1 has not handed over yet
        step = producer.get_job(sequence.job_id)
        if step is not None and step.state is JobState.SCHEDULED:
            with contextlib.suppress(InvalidStateError):
                producer.run_now(sequence.job_id)
        work.released = step is not None


def _children(producer: Jobkit, work: TimeWorkload) -> list[Job | None]:
    return [producer.get_job(f"{work.cron_run}/acct-{n:07d}") for n in range(1, ACCOUNTS + 1)]


def done(producer: Jobkit, work: TimeWorkload) -> bool:
    from jobkit_apps.applications import SequenceState
    from jobkit_apps.reminders import get_sequence

    delayed = [producer.get_job(i) for i in work.delayed]
    if not all(j is not None and j.state.finished for j in delayed):
        return False
    parent = producer.get_job(work.cron_run)
    if parent is None or not parent.state.finished:
        return False
    if not all(c is not None and c.state.finished for c in _children(producer, work)):
        return False
    ended = (SequenceState.COMPLETED, SequenceState.CANCELLED)
    sequences = [get_sequence(a) for a in work.applicants]
    return all(s is not None and s.state in ended for s in sequences)


def checks(
    producer: Jobkit, work: TimeWorkload, sent: dict[str, int]
) -> list[tuple[str, Any, Any]]:
    """(what, expected, actual) for the time part."""
    from jobkit_apps.reminders import get_sequence

    delayed = {i: producer.get_job(i) for i in work.delayed}
    on_time = [
        (j.started_at - work.delayed[i]).total_seconds()
        for i, j in delayed.items()
        if j is not None and j.state.value == "succeeded" and j.started_at is not None
    ]
    punctual = sum(1 for late in on_time if late >= 0)
    worst = f"{max(on_time):.1f} s" if on_time else "-"
    parent = producer.get_job(work.cron_run)
    children = _children(producer, work)

    def state(applicant: str) -> str:
        sequence = get_sequence(applicant)
        return sequence.state.value if sequence else "missing"

    reminders = [sent.get(work.address(a), 0) for a in work.applicants]
    return [
        (f"delayed jobs started at or after their due time (latest {worst} after)",
         len(DELAYS), punctual),
        ("cron run (named by its scheduled time) succeeded", "succeeded",
         parent.state.value if parent else "missing"),
        ("  ... its progress", {"enqueued": ACCOUNTS, "total": ACCOUNTS},
         parent.progress if parent else None),
        ("  ... its children succeeded", ACCOUNTS,
         sum(1 for c in children if c is not None and c.state.value == "succeeded")),
        ("reminder sequences: completed, completed, cancelled",
         ["completed", "completed", "cancelled"], [state(a) for a in work.applicants]),
        ("  ... reminders sent (3 / 1 after documents came / 0)",
         [len(REMINDED_OFFSETS), 1, 0], reminders),
    ]  # fmt: skip


def finish(producer: Jobkit, work: TimeWorkload) -> None:
    """Delete the demo's schedule, so it stops firing."""
    from jobkit.errors import ScheduleNotFoundError

    with contextlib.suppress(ScheduleNotFoundError):
        producer.delete_schedule(work.schedule)
