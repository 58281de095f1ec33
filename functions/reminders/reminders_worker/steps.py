"""One step of a reminder sequence, as a plain function of the step and two adapters.

A step acts only while it is the pending step of the applicant's active sequence (the record
names the pending step's job id). It first hands over to the next step in the record (one
conditional write: a cancel or a second start that got there first wins, and the step does
nothing), then enqueues the reminder email and the next step under ids derived from its own,
so a retried step enqueues neither twice. A retry that finds the hand-over already made by its
earlier attempt finishes the enqueues.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from jobkit.client import Jobkit
from jobkit.models import JobState
from jobkit.observability import logger
from jobkit_apps.applications import Application, Applications, Sequence, SequenceState
from jobkit_apps.email import SEND_DOCUMENTS_REMINDER, DocumentsReminderPayload
from jobkit_apps.reminders import (
    StepPayload,
    cancel_job,
    email_job_id,
    enqueue_step,
    step_job_id,
)


class StepResult(BaseModel):
    """The step job's result in the job log."""

    model_config = ConfigDict(frozen=True)

    step: int
    sent: bool
    next_due: datetime | None = None
    completed: bool = False
    skipped: str | None = None


def run_step(
    payload: StepPayload, job_id: str, jobkit: Jobkit, applications: Applications
) -> StepResult:
    """Run step `payload.step` (job `job_id`) of the applicant's sequence."""
    step = payload.step
    last = step == payload.plan.steps
    application = applications.get(payload.applicant_id)
    sequence = application.sequence if application else None
    if application is None or sequence is None or sequence.id != payload.sequence_id:
        return _skipped(payload, "not the applicant's current sequence")
    if sequence.state is not SequenceState.ACTIVE:
        return _skipped(payload, f"sequence {sequence.state.value}")

    if sequence.job_id != job_id:
        if sequence.advanced_by != job_id or last:
            return _skipped(payload, "not the pending step")
        next_job: str | None = sequence.job_id  # an earlier attempt handed over already
    elif application.documents_complete or not application.missing_documents:
        return _complete(payload, job_id, sequence, applications, "documents complete")
    elif last:
        next_job = None
    else:
        next_job = step_job_id(payload.applicant_id, sequence.id, step + 1)
        due = payload.plan.due(step + 1)
        advanced, _ = applications.advance(sequence, job_id, next_job, step + 1, due)
        if not advanced:
            return _skipped(payload, "sequence changed while the step ran")

    email_job = email_job_id(job_id)
    _send_reminder(jobkit, application, email_job)
    if next_job is None:
        result = _complete(payload, job_id, sequence, applications, "last reminder sent")
        if not result.completed:  # cancelled while this step ran: take the email back
            cancel_job(jobkit, email_job)
        return result
    _enqueue_next(jobkit, applications, sequence, step + 1, next_job, job_id)
    due = payload.plan.due(step + 1)
    _log("reminder sent, next step scheduled", payload, next_due=due.isoformat())
    return StepResult(step=step, sent=True, next_due=due)


def _complete(
    payload: StepPayload,
    job_id: str,
    sequence: Sequence,
    applications: Applications,
    reason: str,
) -> StepResult:
    """End the sequence as completed at this step (skipped if it changed meanwhile)."""
    done, _ = applications.finish(sequence, job_id, SequenceState.COMPLETED, reason)
    if not done:
        return _skipped(payload, "sequence changed while the step ran")
    _log(f"sequence completed: {reason}", payload)
    sent = reason == "last reminder sent"
    return StepResult(step=payload.step, sent=sent, completed=True)


def _send_reminder(jobkit: Jobkit, application: Application, email_job: str) -> None:
    """Enqueue the reminder email once: its id comes from the step's."""
    email = DocumentsReminderPayload(
        to=application.email,
        name=application.name,
        missing_documents=application.missing_documents,
        upload_url=application.upload_url,
    )
    job = jobkit.enqueue(SEND_DOCUMENTS_REMINDER, email, job_id=email_job)
    if job.state is JobState.FAILED and job.attempts == 0:
        # An earlier attempt wrote the job but could not send its message: send it now.
        jobkit.retry(email_job)


def _enqueue_next(
    jobkit: Jobkit,
    applications: Applications,
    sequence: Sequence,
    step: int,
    next_job: str,
    by_job: str,
) -> None:
    """Schedule the next step under the id the record names (already there: nothing sent)."""
    job = enqueue_step(jobkit, sequence, step, next_job)
    if job.state is JobState.FAILED and job.attempts == 0:
        # An earlier attempt could not send it, and its id is spent in the job log: the record
        # moves to a fresh id first (conditionally), so that only one of them can ever act.
        fresh = f"{step_job_id(sequence.applicant_id, sequence.id, step)}:{uuid.uuid4().hex[:8]}"
        if applications.rekey(sequence, next_job, fresh, by_job):
            enqueue_step(jobkit, sequence, step, fresh)


def _skipped(payload: StepPayload, why: str) -> StepResult:
    _log(f"reminder step skipped: {why}", payload)
    return StepResult(step=payload.step, sent=False, skipped=why)


def _log(message: str, payload: StepPayload, **extra: str) -> None:
    # Ids only: the applicant's address never reaches a log line.
    logger.info(
        message,
        extra={
            "applicant_id": payload.applicant_id,
            "sequence_id": payload.sequence_id,
            "step": payload.step,
            **extra,
        },
    )
