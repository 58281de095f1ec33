"""The worker runtime: what a function's handler hands its SQS batch to.

Per record: parse the envelope, claim the job in the log (one conditional write, which also
checks that the message agrees with the log), run the job the log holds, record the outcome
(one more). Transient errors back off through the message's visibility; permanent ones and
exhausted attempts go to the DLQ at once. A message held back (not due, rate-limited, another
worker's lease, too little time left) spends no attempt, and is replaced by a fresh copy
before SQS's redrive policy would count it into the DLQ. See README "Retries, failures and
the dead-letter queue" and "Side effects".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from pydantic import ValidationError as PydanticValidationError

from jobkit.errors import JobValidationError
from jobkit.job_context import OUTCOME_GRACE_S, JobContext, Processor, lease_seconds
from jobkit.jobs import JobType, Tracking
from jobkit.models import Envelope, Job, JobState, utcnow
from jobkit.observability import REDUNDANT_KEYS, logger
from jobkit.store import Claim, ClaimOutcome
from jobkit.worker_attempts import Attempts, expected_of

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = [
    "OUTCOME_GRACE_S",
    "JobContext",
    "Processor",
    "RetryScheduledError",
    "Worker",
    "lease_seconds",
]


class RetryScheduledError(Exception):
    """Marks a record as a batch item failure after its visibility was set (not a crash)."""


class Worker(Attempts):
    """Runs the job types of one queue. A function's handler calls `handle(event, context)`.

    Its parts: registrations and settings (`jobkit.worker_base`), running a claimed attempt
    (`jobkit.worker_attempts`), handing back and dead-lettering messages
    (`jobkit.worker_messages`); here, what becomes of each record of a batch."""

    def handle(
        self, event: dict[str, Any], context: LambdaContext | None
    ) -> PartialItemFailureResponse:
        """Process an SQS batch; returns `batchItemFailures` for the records to see again."""
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        logger.remove_keys(REDUNDANT_KEYS)
        self._claimed = []
        try:
            return process_partial_response(
                event=event,
                record_handler=self._record,
                processor=processor,
                context=context,
            )
        finally:
            self._write_page()
            self._flush_metrics()

    def _record(self, record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
        started = time.monotonic()
        try:
            envelope = Envelope.model_validate_json(record.body)
        except PydanticValidationError as exc:
            reason = "not a jobkit envelope: " + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            self._dead_letter(record.body, reason, None)
            logger.error(
                "invalid message dead-lettered",
                extra={"message_id": record.message_id, "error": reason},
            )
            return
        logger.append_keys(job_id=envelope.id, job_type=envelope.type)
        try:
            handed_back = self._run(envelope, record, lambda_context, started)
        finally:
            logger.remove_keys(["job_id", "job_type", "attempt"])
        if handed_back is not None:
            raise RetryScheduledError(handed_back)

    def _run(
        self,
        envelope: Envelope,
        record: SQSRecord,
        lambda_context: LambdaContext | None,
        started: float,
    ) -> str | None:
        """Handle one job message; returns why the message is handed back to its queue to
        come again (a batch item failure), or None when it is done with."""
        registered = self._types.get(envelope.type)
        if registered is None:
            self._unrunnable(envelope, record)
            return None
        job_type, fn = registered
        held = self._hold(envelope, job_type, lambda_context)
        if held is not None:
            return self._hand_back(record, *held)
        if self._runs_unclaimed(envelope, job_type, record):
            unclaimed = _unclaimed_job(envelope, job_type)
            return self._execute(job_type, fn, unclaimed, envelope, record, started, claimed=False)
        claim = self._claim(envelope, job_type)
        job = claim.job
        if claim.outcome is ClaimOutcome.CLAIMED and job is not None:
            return self._execute(job_type, fn, job, envelope, record, started)
        if claim.outcome is ClaimOutcome.BUSY:
            return self._hand_back(
                record, claim.lease_remaining + 1, "another worker holds the job"
            )
        if claim.outcome is ClaimOutcome.MISMATCH and job is not None:
            self._mismatch(envelope, record, job)
        elif claim.outcome is ClaimOutcome.ABANDONED and job is not None:
            self._abandon(job_type, job, envelope)
        elif job is not None and job.dead_letter_due:
            self._dead_letter_late(envelope, job)
        else:
            state = job.state.value if job else "missing"
            logger.info("job skipped", extra={"state": state, "reason": "duplicate delivery"})
        return None

    def _hold(
        self, envelope: Envelope, job_type: JobType, lambda_context: LambdaContext | None
    ) -> tuple[float, str] | None:
        """(seconds, why) when the job must wait before it is claimed, without an attempt."""
        if lambda_context is not None:
            remaining = lambda_context.get_remaining_time_in_millis() / 1000
            if remaining < lease_seconds(job_type) + 1:
                # Too little time left in this invocation to run the job and record it.
                return 0, "not enough time left in this invocation"
        if envelope.not_before is not None:
            wait = (envelope.not_before - utcnow()).total_seconds()
            if wait > 0.5:
                # Scheduler fires up to a minute early by design: hold it to the second.
                return wait, "not due yet"
        admit = self._admissions.get(job_type.name)
        if admit is None:
            return None
        try:
            payload = job_type.validate(envelope.payload)
        except JobValidationError:
            return None  # the run fails it, as without an admission
        hold = admit(payload)
        return (hold, "not admitted yet") if hold is not None and hold > 0 else None

    def _runs_unclaimed(self, envelope: Envelope, job_type: JobType, record: SQSRecord) -> bool:
        """Does this job run with no claim? Only a job of a type that tracks failures only
        and that is not in the log: a job there (a retry of a failure, a cancelled one, a
        redriven dead letter) is claimed as usual. A first delivery reads eventually
        consistent; a message seen before (handed back after a failure, perhaps a moment
        ago) reads consistently, so that it finds the item its failure wrote."""
        if job_type.tracking is not Tracking.FAILURES or envelope.dead_letter is not None:
            return False
        seen_before = int(record.attributes.approximate_receive_count or 1) > 1
        return not self.log.is_logged(envelope.id, consistent=seen_before)

    def _claim(self, envelope: Envelope, job_type: JobType) -> Claim:
        """Claim the job the message points at; it must agree with the log (type, payload)."""
        generation = envelope.dead_letter.generation if envelope.dead_letter else None
        # A scheduled run, or a job of a type with tracking `light`, is not in the log until
        # its first delivery: adopt it at once, in one write (a redelivery finds it there,
        # and adopt falls back to the claim).
        unlogged = envelope.origin == "schedule" or job_type.tracking is Tracking.LIGHT
        if unlogged and generation is None:
            return self._adopt(envelope, job_type)
        claim = self.log.claim(
            envelope.id,
            lease_seconds(job_type),
            generation,
            expected=expected_of(envelope, job_type),
            take_over=self._takes_over(job_type),
        )
        if claim.outcome is ClaimOutcome.MISSING and generation is None:
            return self._adopt(envelope, job_type)
        return claim


def _unclaimed_job(envelope: Envelope, job_type: JobType) -> Job:
    """The job of an unclaimed run (tracking `failures`, not in the log) as the message has
    it: its first attempt as far as anyone knows."""
    now = utcnow()
    return Job(
        id=envelope.id,
        type=job_type.name,
        queue=job_type.queue,
        state=JobState.RUNNING,
        attempts=1,
        max_attempts=job_type.max_attempts,
        created_at=envelope.enqueued_at,
        updated_at=now,
        started_at=now,
        payload=envelope.payload,
    )
