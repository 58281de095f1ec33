"""The worker runtime: what a function's handler hands its SQS batch to.

Per record: parse the envelope, claim the job in the log (one conditional write), run the
job type's processor, record the outcome (one more). Transient errors back off through the
message's visibility; permanent ones and exhausted attempts go to the DLQ at once. See
DESIGN.md "The path of a job".
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from jobkit import queues
from jobkit.errors import JobValidationError, PermanentError, TransientError
from jobkit.jobs import JobType, Retention
from jobkit.models import DeadLetter, Envelope, Job, utcnow
from jobkit.observability import logger, metrics
from jobkit.redact import redact
from jobkit.settings import Settings, get_settings
from jobkit.store import ClaimOutcome, JobLog

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

Processor = Callable[[Any, "JobContext"], Any]
P = TypeVar("P", bound=Processor)
# `admit(payload) -> seconds to wait, or None to go ahead`: asked before the claim.
Admission = Callable[[Any], float | None]
A = TypeVar("A", bound=Admission)


class RetryScheduledError(Exception):
    """Marks a record as a batch item failure after its visibility was set (not a crash)."""


@dataclass
class JobContext:
    """What a processor knows about the run it is in."""

    job_id: str
    job_type: str
    attempt: int
    max_attempts: int
    deadline: float  # time.monotonic() by which the processor should be done
    _log: JobLog = field(repr=False)

    def remaining_time(self) -> float:
        """Seconds left before the lease (and so the job's timeout) runs out."""
        return max(self.deadline - time.monotonic(), 0.0)

    def report_progress(self, progress: Any) -> None:
        """Record progress in the job log (one write per call: report milestones, not ticks)."""
        self._log.report_progress(self.job_id, self.attempt, progress)


@dataclass
class _Stats:
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    durations: list[float] = field(default_factory=list)


class Worker:
    """Runs the job types of one queue. A function's handler calls `handle(event, context)`."""

    def __init__(self, queue: str, settings: Settings | None = None) -> None:
        self.queue = queue
        self._settings = settings
        self._types: dict[str, tuple[JobType, Processor]] = {}
        self._admissions: dict[str, Admission] = {}
        self._log: JobLog | None = None
        self._stats: dict[str, _Stats] = defaultdict(_Stats)

    def processor(self, job_type: JobType) -> Callable[[P], P]:
        """Register `fn(payload, ctx) -> result` as the processor of `job_type`."""
        if job_type.queue != self.queue:
            raise ValueError(
                f"{job_type.name} runs on queue {job_type.queue!r}, not {self.queue!r}"
            )

        def register(fn: P) -> P:
            self._types[job_type.name] = (job_type, fn)
            return fn

        return register

    def admission(self, job_type: JobType) -> Callable[[A], A]:
        """Register `admit(payload) -> float | None`, asked before each claim of `job_type`.

        A number is seconds to wait: the message is hidden that long and the job keeps its
        attempts (a claim would have spent one), as for a rate limit. None runs the job now.
        A payload that does not validate skips the admission (the run fails it).
        """
        if job_type.queue != self.queue:
            raise ValueError(
                f"{job_type.name} runs on queue {job_type.queue!r}, not {self.queue!r}"
            )

        def register(fn: A) -> A:
            self._admissions[job_type.name] = fn
            return fn

        return register

    def use_settings(self, settings: Settings | None) -> Settings | None:
        """Point the worker at other settings (None: the environment's, read when needed) and
        return the ones it had. For test harnesses such as `jobkit.testing`, which host
        several workers in one process; a deployed worker reads its environment once."""
        previous, self._settings, self._log = self._settings, settings, None
        return previous

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def log(self) -> JobLog:
        if self._log is None:
            self._log = JobLog(self.settings.require_table())
        return self._log

    def handle(
        self, event: dict[str, Any], context: LambdaContext | None
    ) -> PartialItemFailureResponse:
        """Process an SQS batch; returns `batchItemFailures` for the records to see again."""
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        try:
            return process_partial_response(
                event=event,
                record_handler=self._record,
                processor=processor,
                context=context,
            )
        finally:
            self._flush_metrics()

    # -- one record ------------------------------------------------------------------------

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
        logger.set_correlation_id(envelope.id)
        logger.append_keys(job_id=envelope.id, job_type=envelope.type)
        try:
            self._run(envelope, record, lambda_context, started)
        finally:
            logger.remove_keys(["job_id", "job_type", "attempt"])
            logger.set_correlation_id(None)

    def _run(
        self,
        envelope: Envelope,
        record: SQSRecord,
        lambda_context: LambdaContext | None,
        started: float,
    ) -> None:
        registered = self._types.get(envelope.type)
        if registered is None:
            reason = f"no processor for job type {envelope.type!r} on queue {self.queue!r}"
            # The dead letter must carry the job's generation, or a redrive cannot revive it.
            known = self.log.get(envelope.id)
            self.log.fail(envelope.id, None, reason, Retention().failed)
            self._dead_letter_job(envelope, reason, known.generation if known else 0)
            logger.error("job failed", extra={"error": reason, "reason": "unknown_type"})
            return
        job_type, fn = registered

        remaining = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context else None
        if remaining is not None and remaining < job_type.timeout + 1:
            # Too little time left in this invocation to run the job within its timeout: hand it
            # back at once, without spending an attempt.
            self._defer(record, 0, "not enough time left in this invocation")
        if envelope.not_before is not None:
            wait = (envelope.not_before - utcnow()).total_seconds()
            if wait > 0.5:
                # Scheduler fires up to a minute early by design: hold it to the second.
                self._defer(record, wait, "not due yet")
        admit = self._admissions.get(job_type.name)
        if admit is not None:
            try:
                payload = job_type.validate(envelope.payload)
            except JobValidationError:
                pass  # the run below fails it, as without an admission
            else:
                hold = admit(payload)
                if hold is not None and hold > 0:
                    self._defer(record, hold, "not admitted yet")
        generation = envelope.dead_letter.generation if envelope.dead_letter else None
        # A scheduled run is not in the log until its first delivery: adopt it at once, in one
        # write (a redelivery finds it there, and adopt falls back to the claim).
        adopt_first = envelope.origin == "schedule" and generation is None
        claim = None if adopt_first else self.log.claim(envelope.id, job_type.timeout, generation)
        if claim is None or (claim.outcome is ClaimOutcome.MISSING and generation is None):
            claim = self.log.adopt(
                envelope.id,
                job_type.name,
                job_type.queue,
                job_type.max_attempts,
                envelope.payload,
                job_type.timeout,
            )
        if claim.outcome is ClaimOutcome.BUSY:
            self._defer(record, claim.lease_remaining + 1, "another worker holds the job")
        if claim.outcome is not ClaimOutcome.CLAIMED or claim.job is None:
            state = claim.job.state.value if claim.job else "missing"
            logger.info("job skipped", extra={"state": state, "reason": "duplicate delivery"})
            return
        job = claim.job
        logger.append_keys(attempt=job.attempts)

        if job.attempts > job.max_attempts:
            self._fail(
                job_type, job, envelope, f"attempts exhausted ({job.max_attempts})", "exhausted"
            )
            return
        logger.info("job processing")
        context = JobContext(
            job.id,
            job.type,
            job.attempts,
            job.max_attempts,
            time.monotonic() + job_type.timeout,
            self.log,
        )
        try:
            payload = job_type.validate(envelope.payload)
            result = fn(payload, context)
        except (PermanentError, JobValidationError) as exc:
            self._fail(job_type, job, envelope, redact(str(exc)), "permanent")
            return
        except Exception as exc:  # everything else may pass: retry it
            self._retry_or_fail(job_type, job, envelope, record, exc)
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        held = self.log.succeed(
            job.id, job.attempts, result, duration_ms, job_type.retention.succeeded
        )
        if not held:
            logger.warning("job finished after its lease passed to another attempt")
        stats = self._stats[job.type]
        stats.succeeded += 1
        stats.durations.append(duration_ms)
        logger.info("job succeeded", extra={"duration_ms": duration_ms})

    def _retry_or_fail(
        self, job_type: JobType, job: Job, envelope: Envelope, record: SQSRecord, exc: Exception
    ) -> None:
        error = redact(f"{type(exc).__name__}: {exc}")
        if job.attempts >= job.max_attempts:
            self._fail(
                job_type,
                job,
                envelope,
                f"attempts exhausted ({job.max_attempts}): {error}",
                "exhausted",
            )
            return
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        delay = max(retry_after or 0.0, job_type.backoff.delay(job.attempts))
        self.log.retrying(job.id, job.attempts, error, delay)
        self._stats[job.type].retried += 1
        logger.warning("job retrying", extra={"error": error, "delay_s": round(delay, 3)})
        queues.hide(self.settings.queue_url, record.receipt_handle, delay)
        raise RetryScheduledError(error)

    def _fail(
        self, job_type: JobType, job: Job, envelope: Envelope, error: str, reason: str
    ) -> None:
        self.log.fail(job.id, job.attempts, error, job_type.retention.failed)
        self._dead_letter_job(envelope, error, job.generation)
        self._stats[job.type].failed += 1
        logger.error("job failed", extra={"error": error, "reason": reason})

    def _defer(self, record: SQSRecord, seconds: float, why: str) -> None:
        logger.info("job deferred", extra={"delay_s": round(seconds, 3), "reason": why})
        queues.hide(self.settings.queue_url, record.receipt_handle, seconds)
        raise RetryScheduledError(why)

    def _dead_letter_job(self, envelope: Envelope, reason: str, generation: int) -> None:
        marked = envelope.model_copy(
            update={"dead_letter": DeadLetter(reason=reason, generation=generation, at=utcnow())}
        )
        self._dead_letter(marked.to_json(), reason, envelope.id)

    def _dead_letter(self, body: str, reason: str, job_id: str | None) -> None:
        queues.dead_letter(self.settings.dead_letter_queue_url, body, reason, job_id, self.queue)

    def _flush_metrics(self) -> None:
        """One EMF record per job type of the batch: counts and durations."""
        for job_type, stats in self._stats.items():
            metrics.add_dimension("job_type", job_type)
            for name, value in (
                ("JobSucceeded", stats.succeeded),
                ("JobFailed", stats.failed),
                ("JobRetried", stats.retried),
            ):
                if value:
                    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            for duration in stats.durations[:100]:
                metrics.add_metric(name="JobDuration", unit=MetricUnit.Milliseconds, value=duration)
            metrics.flush_metrics()
        self._stats.clear()
