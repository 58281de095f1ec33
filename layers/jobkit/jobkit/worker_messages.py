"""What a worker does with a message it does not run now: hand it back to come again later
(without spending an attempt), or put it in the dead-letter queue with the reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobkit import queues
from jobkit.jobs import Retention
from jobkit.models import DeadLetter, Envelope, Job, utcnow
from jobkit.observability import logger
from jobkit.store import CANCELLABLE
from jobkit.worker_base import WorkerBase

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


class Messages(WorkerBase):
    """`jobkit.worker.Worker`'s handing back and dead-lettering of messages."""

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
