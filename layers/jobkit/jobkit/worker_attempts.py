"""Running a claimed attempt: the processor runs the job the log holds, and the outcome is
recorded (succeeded, retrying, failed and dead-lettered); an attempt that lost the job records
nothing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from jobkit import queues
from jobkit.errors import (
    JobValidationError,
    LeaseLostError,
    OutcomeUnknownError,
    PermanentError,
    TransientError,
)
from jobkit.job_context import JobContext, Processor, lease_seconds
from jobkit.jobs import Guarantee, JobType
from jobkit.models import Envelope, Job
from jobkit.observability import logger
from jobkit.redact import redact
from jobkit.store import Claim, ClaimOutcome, Expected
from jobkit.worker_messages import Messages

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

# A message hidden by a heartbeat shows again this long after the lease would end.
_VISIBILITY_MARGIN_S = 30
_CHECK_THEN_RETRY = (
    "an at_most_once job is not run again: check whether it took effect, then retry it if not"
)


class Attempts(Messages):
    """`jobkit.worker.Worker`'s running of claimed attempts."""

    def _execute(
        self,
        job_type: JobType,
        fn: Processor,
        job: Job,
        envelope: Envelope,
        record: SQSRecord,
        started: float,
        *,
        claimed: bool = True,
    ) -> str | None:
        """Run the claimed job as the log holds it, and record how it ended.

        An unclaimed run (`claimed=False`: a job of a type with tracking `failures` that is
        not in the log) holds no lease: a heartbeat only hides the message, a success writes
        nothing, and a failure first writes the job to the log as this attempt."""
        if claimed:  # a job run unclaimed is not in the log: no page names it
            self._claimed.append((job.type, job.id))
        logger.append_keys(attempt=job.attempts)
        # One INFO line per attempt, its outcome (with duration and attempt): the start at DEBUG.
        logger.debug("job processing")
        lease = lease_seconds(job_type)
        lease_end = time.monotonic() + lease

        def beat(progress: Any) -> float:
            nonlocal lease_end
            if claimed and not self.log.heartbeat(job.id, job.attempts, lease, progress):
                raise LeaseLostError(f"attempt {job.attempts} of job {job.id} lost its lease")
            now = time.monotonic()
            lease_end = now + lease
            queues.hide_quietly(
                self.settings.queue_url, record.receipt_handle, lease + _VISIBILITY_MARGIN_S
            )
            return now + job_type.timeout

        context = JobContext(
            job.id,
            job.type,
            job.attempts,
            job.max_attempts,
            time.monotonic() + job_type.timeout,
            beat,
        )
        try:
            payload = job_type.validate(job.payload)
            result = fn(payload, context)
        except LeaseLostError:
            self._stale("running")
            return None
        except Exception as exc:
            return self._failed(job_type, job, envelope, record, exc, lease_end, claimed)
        duration_ms = int((time.monotonic() - started) * 1000)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        retention = job_type.retention.succeeded
        if claimed and not self.log.succeed(
            job.id, job.attempts, result, duration_ms, retention, until=lease_end
        ):
            self._stale("succeeded")
            return None
        stats = self._stats[job.type]
        stats.succeeded += 1
        stats.durations.append(duration_ms)
        logger.info("job succeeded", extra={"duration_ms": duration_ms})
        return None

    def _failed(
        self,
        job_type: JobType,
        job: Job,
        envelope: Envelope,
        record: SQSRecord,
        exc: Exception,
        until: float,
        claimed: bool,
    ) -> str | None:
        """Record a failed attempt: failed and dead-lettered at once (a permanent error, an
        invalid payload), else retrying while attempts are left. An unclaimed run's job is
        first written to the log, claimed as this attempt (`_adopt`)."""
        if not claimed:
            claim = self._adopt(envelope, job_type)
            if claim.outcome is not ClaimOutcome.CLAIMED or claim.job is None:
                self._stale("failed")  # another delivery of it holds or finished it
                return None
            job = claim.job
        if isinstance(exc, PermanentError | JobValidationError):
            self._fail(job_type, job, envelope, redact(str(exc)), "permanent", until)
            return None
        return self._retry_or_fail(job_type, job, envelope, record, exc, until)

    def _adopt(self, envelope: Envelope, job_type: JobType) -> Claim:
        """Write a job that is not in the log yet, claimed as this attempt (one write); if it
        is there, claim it (it must be the same job)."""
        return self.log.adopt(
            envelope.id,
            expected_of(envelope, job_type),
            lease_seconds(job_type),
            take_over=self._takes_over(job_type),
        )

    @staticmethod
    def _takes_over(job_type: JobType) -> bool:
        """May a claim take over an attempt whose lease passed (at least once only)?"""
        return job_type.guarantee is Guarantee.AT_LEAST_ONCE

    def _retry_or_fail(
        self,
        job_type: JobType,
        job: Job,
        envelope: Envelope,
        record: SQSRecord,
        exc: Exception,
        until: float,
    ) -> str | None:
        error = redact(f"{type(exc).__name__}: {exc}")
        unknown = isinstance(exc, OutcomeUnknownError) or not isinstance(exc, TransientError)
        if job_type.guarantee is Guarantee.AT_MOST_ONCE and unknown:
            reason = f"outcome unknown: {error}; {_CHECK_THEN_RETRY}"
            self._fail(job_type, job, envelope, reason, "outcome_unknown", until)
            return None
        if job.attempts >= job.max_attempts:
            reason = f"attempts exhausted ({job.max_attempts}): {error}"
            self._fail(job_type, job, envelope, reason, "exhausted", until)
            return None
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        delay = max(retry_after or 0.0, job_type.backoff.delay(job.attempts))
        if not self.log.retrying(job.id, job.attempts, error, delay, until=until):
            self._stale("retrying")
            return None
        self._stats[job.type].retried += 1
        logger.warning("job retrying", extra={"error": error, "delay_s": round(delay, 3)})
        return self._hand_back(record, delay, error, log=False)

    def _fail(
        self,
        job_type: JobType,
        job: Job,
        envelope: Envelope,
        error: str,
        reason: str,
        until: float,
    ) -> None:
        retention = job_type.retention.failed
        if not self.log.fail(job.id, job.attempts, error, retention, until=until):
            self._stale("failed")
            return
        self._dead_letter_job(envelope, error, job.generation)
        self._stats[job.type].failed += 1
        logger.error("job failed", extra={"error": error, "reason": reason})

    def _abandon(self, job_type: JobType, job: Job, envelope: Envelope) -> None:
        """Fail a job whose attempt never finished and that may not run again."""
        n = job.attempts
        if job_type.guarantee is Guarantee.AT_MOST_ONCE:
            error = (
                f"outcome unknown: attempt {n} did not finish (the worker crashed or timed "
                f"out while it ran); {_CHECK_THEN_RETRY}"
            )
            reason = "outcome_unknown"
        else:
            error = (
                f"attempts exhausted ({job.max_attempts}): attempt {n} did not finish "
                "(the worker crashed or timed out)"
            )
            reason = "exhausted"
        if not self.log.fail_as_found(job, error, job_type.retention.failed):
            logger.info("job skipped", extra={"reason": "abandoned attempt already handled"})
            return
        self._dead_letter_job(envelope, error, job.generation)
        self._stats[job.type].failed += 1
        logger.error("job failed", extra={"error": error, "reason": reason})

    def _stale(self, outcome: str) -> None:
        """This attempt lost the job (its lease passed to another, or it was finished): its
        outcome is not recorded, sent anywhere or counted."""
        logger.warning(
            "job outcome dropped: this attempt no longer holds the job",
            extra={"outcome": outcome},
        )


def expected_of(envelope: Envelope, job_type: JobType) -> Expected:
    """The job a message names, as the message has it (claims hold only for exactly that)."""
    return Expected(
        type=job_type.name,
        queue=job_type.queue,
        payload=envelope.payload,
        max_attempts=job_type.max_attempts,
        created_at=envelope.enqueued_at,
    )
