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
from jobkit.errors import (
    DeclarationError,
    InvalidRequestError,
    JobValidationError,
    LeaseLostError,
    OutcomeUnknownError,
    PermanentError,
    TransientError,
)
from jobkit.jobs import Guarantee, JobType, Retention
from jobkit.models import DeadLetter, Envelope, Job, utcnow
from jobkit.observability import logger, metrics
from jobkit.redact import redact
from jobkit.settings import Settings, get_settings
from jobkit.store import CANCELLABLE, Claim, ClaimOutcome, JobLog

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

Processor = Callable[[Any, "JobContext"], Any]
P = TypeVar("P", bound=Processor)
# `admit(payload) -> seconds to wait, or None to go ahead`: asked before the claim.
Admission = Callable[[Any], float | None]
A = TypeVar("A", bound=Admission)

# A claim's lease runs this long past the job's timeout: time for the outcome write (retried
# in-process while it lasts) after a processor that used all of its own.
OUTCOME_GRACE_S = 5.0
# A message hidden by a heartbeat shows again this long after the lease would end.
_VISIBILITY_MARGIN_S = 30


class RetryScheduledError(Exception):
    """Marks a record as a batch item failure after its visibility was set (not a crash)."""


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


@dataclass
class _Stats:
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    durations: list[float] = field(default_factory=list)


_CHECK_THEN_RETRY = (
    "an at_most_once job is not run again: check whether it took effect, then retry it if not"
)


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
            raise DeclarationError(
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
            raise DeclarationError(
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
            handed_back = self._run(envelope, record, lambda_context, started)
        finally:
            logger.remove_keys(["job_id", "job_type", "attempt"])
            logger.set_correlation_id(None)
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

    def _claim(self, envelope: Envelope, job_type: JobType) -> Claim:
        """Claim the job the message points at; it must agree with the log (type, payload)."""
        generation = envelope.dead_letter.generation if envelope.dead_letter else None
        take_over = job_type.guarantee is Guarantee.AT_LEAST_ONCE
        lease = lease_seconds(job_type)

        def adopt() -> Claim:
            return self.log.adopt(
                envelope.id,
                job_type.name,
                job_type.queue,
                job_type.max_attempts,
                envelope.payload,
                lease,
                take_over=take_over,
            )

        # A scheduled run is not in the log until its first delivery: adopt it at once, in one
        # write (a redelivery finds it there, and adopt falls back to the claim).
        if envelope.origin == "schedule" and generation is None:
            return adopt()
        claim = self.log.claim(
            envelope.id,
            lease,
            generation,
            job_type=job_type.name,
            payload=envelope.payload,
            take_over=take_over,
        )
        if claim.outcome is ClaimOutcome.MISSING and generation is None:
            return adopt()
        return claim

    def _execute(
        self,
        job_type: JobType,
        fn: Processor,
        job: Job,
        envelope: Envelope,
        record: SQSRecord,
        started: float,
    ) -> str | None:
        """Run the claimed job as the log holds it, and record how it ended."""
        logger.append_keys(attempt=job.attempts)
        logger.info("job processing")
        lease = lease_seconds(job_type)
        lease_end = time.monotonic() + lease

        def beat(progress: Any) -> float:
            nonlocal lease_end
            if not self.log.heartbeat(job.id, job.attempts, lease, progress):
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
        except (PermanentError, JobValidationError) as exc:
            self._fail(job_type, job, envelope, redact(str(exc)), "permanent", lease_end)
            return None
        except Exception as exc:  # everything else may pass: retry it
            return self._retry_or_fail(job_type, job, envelope, record, exc, lease_end)
        duration_ms = int((time.monotonic() - started) * 1000)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        retention = job_type.retention.succeeded
        if not self.log.succeed(
            job.id, job.attempts, result, duration_ms, retention, until=lease_end
        ):
            self._stale("succeeded")
            return None
        stats = self._stats[job.type]
        stats.succeeded += 1
        stats.durations.append(duration_ms)
        logger.info("job succeeded", extra={"duration_ms": duration_ms})
        return None

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

    def _unrunnable(self, envelope: Envelope, record: SQSRecord) -> None:
        """A message this worker cannot run (no processor for its type here). Its job, if the
        log has none under its id, is logged as failed; if the log has it, waiting on this
        very queue, it is failed (a deploy lost its processor); any other job with that id
        (another type, another queue's, another payload) is left as it is."""
        reason = f"no processor for job type {envelope.type!r} on queue {self.queue!r}"
        retention = Retention().failed
        created, job = self.log.record_unrunnable(
            envelope.id, envelope.type, self.queue, envelope.payload, reason, retention
        )
        ours = (
            (job.type, job.queue, job.payload) == (envelope.type, self.queue, envelope.payload)
            and job.state in CANCELLABLE
            and self.log.fail_as_found(job, reason, retention)
        )
        if created or ours:
            self._dead_letter_job(envelope, reason, job.generation)
            self._stats[envelope.type].failed += 1
        elif job.dead_letter_due and (job.type, job.queue, job.payload) == (
            envelope.type,
            self.queue,
            envelope.payload,
        ):
            self._dead_letter_late(envelope, job)  # logged by an earlier delivery of this one
            return
        else:
            reason += f"; job {envelope.id} in the log ({job.type}, {job.state.value}) left as is"
            # Not marked as that job's dead letter: a redrive must not revive it from here.
            self._dead_letter(record.body, reason, envelope.id)
        logger.error("job failed", extra={"error": reason, "reason": "unknown_type"})

    def _mismatch(self, envelope: Envelope, record: SQSRecord, job: Job) -> None:
        """The log holds another job under this id: the message is a stray, dead-letter it."""
        differs = "payload" if job.type == envelope.type else f"type ({job.type} in the log)"
        reason = (
            f"message disagrees with the job log: job {envelope.id} has another {differs}; "
            "the logged job was left as is"
        )
        self._dead_letter(record.body, reason, envelope.id)
        logger.error("message dead-lettered", extra={"error": reason, "reason": "mismatch"})

    def _stale(self, outcome: str) -> None:
        """This attempt lost the job (its lease passed to another, or it was finished): its
        outcome is not recorded, sent anywhere or counted."""
        logger.warning(
            "job outcome dropped: this attempt no longer holds the job",
            extra={"outcome": outcome},
        )

    def _hand_back(
        self, record: SQSRecord, seconds: float, why: str, *, log: bool = True
    ) -> str | None:
        """Let the message come again after `seconds`, without spending an attempt on it.

        Every receive counts toward the queue's maxReceiveCount, and SQS moves a message past
        it to the DLQ with no reason given: one that has come that often is replaced by a
        fresh copy (sent with the delay; the old one is deleted as done) instead of hidden.
        Returns why the record is handed back, or None when it was replaced."""
        if log:
            logger.info("job deferred", extra={"delay_s": round(seconds, 3), "reason": why})
        received = int(record.attributes.approximate_receive_count or 1)
        if received >= self.settings.max_receive_count - 1:
            attributes = {
                name: value.get("stringValue")
                for name, value in (record.raw_event.get("messageAttributes") or {}).items()
                if value.get("stringValue") is not None
            }
            if queues.resend(self.settings.queue_url, record.body, seconds, attributes):
                logger.info("message replaced", extra={"receive_count": received})
                return None
        queues.hide(self.settings.queue_url, record.receipt_handle, seconds)
        return why

    def _dead_letter_job(self, envelope: Envelope, reason: str, generation: int) -> None:
        """Put a failed job's message in the DLQ, then clear the job's `dead_letter_due` (set
        by the write that failed it): a worker that dies between the two leaves it due, and
        the message, which comes back, is dead-lettered by the next delivery."""
        marked = envelope.model_copy(
            update={"dead_letter": DeadLetter(reason=reason, generation=generation, at=utcnow())}
        )
        self._dead_letter(marked.to_json(), reason, envelope.id)
        self.log.dead_lettered(envelope.id, generation)

    def _dead_letter_late(self, envelope: Envelope, job: Job) -> None:
        """A failed job whose dead letter never reached the DLQ (its worker died in between)."""
        reason = job.error or "failed"
        self._dead_letter_job(envelope, reason, job.generation)
        logger.warning("job dead-lettered late", extra={"error": reason})

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
