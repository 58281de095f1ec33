"""The dead-letter calls of `jobkit.client.Jobkit`: look into a queue's DLQ without consuming
it, redrive only the dead letters that match a filter (or up to a limit), purge it.

Looking is ReceiveMessage (10 at a time, hidden a short while) followed by one
ChangeMessageVisibility(0) per batch of 10 for every message read, before the call returns:
nothing is deleted, though each read counts as a receive in `receive_count`."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from jobkit import queues
from jobkit.admin_calls import AdminCalls, RedriveResult
from jobkit.errors import ConfigurationError, EnqueueError, InvalidRequestError
from jobkit.jobs import get_job_type
from jobkit.models import SQS_MAX_MESSAGE_BYTES, Envelope, check_job_id
from jobkit.redact import redact

# How long a message read stays hidden while a call looks at the DLQ; reading stops at half of
# it, so that every message read is still hidden (and counted once) when they are released.
READ_VISIBILITY_SECONDS = 60
MAX_LIST = 1000


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, as `Jobkit.dead_letters` shows it (addresses masked)."""

    message_id: str
    job_id: str | None  # None: the body is not a jobkit envelope
    job_type: str | None
    reason: str | None
    age_seconds: float  # since SQS's SentTimestamp (when it reached the DLQ)
    receive_count: int
    body: str
    attributes: dict[str, str]


def _envelope(body: str) -> Envelope | None:
    from pydantic import ValidationError

    try:
        return Envelope.model_validate_json(body)
    except ValidationError:
        return None


def _reason(message: queues.Peeked, envelope: Envelope | None) -> str | None:
    """The worker's reason: its message attribute, else the envelope's dead-letter mark."""
    if "jobkit-reason" in message.attributes:
        return message.attributes["jobkit-reason"]
    return envelope.dead_letter.reason if envelope and envelope.dead_letter else None


def _shown(message: queues.Peeked, now_ms: int) -> DeadLetter:
    envelope = _envelope(message.body)
    reason = _reason(message, envelope)
    return DeadLetter(
        message_id=message.message_id,
        job_id=envelope.id if envelope else None,
        job_type=envelope.type if envelope else None,
        reason=redact(reason) if reason is not None else None,
        age_seconds=max(now_ms - message.sent_timestamp_ms, 0) / 1000,
        receive_count=message.receive_count,
        body=redact(message.body, SQS_MAX_MESSAGE_BYTES),
        attributes={name: redact(value) for name, value in message.attributes.items()},
    )


@dataclass(frozen=True)
class _Filter:
    """Which dead letters a redrive moves: all of the given conditions hold."""

    job_type: str | None = None
    reason_contains: str | None = None  # casefolded
    job_ids: frozenset[str] | None = None

    def __call__(self, message: queues.Peeked) -> bool:
        envelope = _envelope(message.body)
        if self.job_type is not None and (envelope is None or envelope.type != self.job_type):
            return False
        if self.job_ids is not None and (envelope is None or envelope.id not in self.job_ids):
            return False
        reason = (_reason(message, envelope) or "").casefold()
        return self.reason_contains is None or self.reason_contains in reason


def _check_limit(limit: object, optional: bool) -> None:
    if limit is None and optional:
        return
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
        raise InvalidRequestError(f"limit is a whole number from 1 to {MAX_LIST}, not {limit!r}")


def _filter_of(
    queue: str,
    job_type: str | None,
    reason_contains: str | None,
    job_ids: Collection[str] | None,
) -> _Filter | None:
    """The filter of a redrive (None: no condition), or `InvalidRequestError`."""
    if job_type is not None:
        declared = get_job_type(job_type)  # UnknownJobTypeError
        if declared.queue != queue:
            raise InvalidRequestError(
                f"job type {declared.name!r} runs on queue {declared.queue!r}, not {queue!r}"
            )
        job_type = declared.name
    if reason_contains is not None and not reason_contains.strip():
        raise InvalidRequestError("the reason text to look for must not be empty")
    ids: frozenset[str] | None = None
    if job_ids is not None:
        if isinstance(job_ids, str) or not job_ids:
            raise InvalidRequestError("job ids are a non-empty list of job ids")
        ids = frozenset(check_job_id(job_id) for job_id in job_ids)
    if job_type is None and reason_contains is None and ids is None:
        return None
    reason = reason_contains.casefold() if reason_contains is not None else None
    return _Filter(job_type, reason, ids)


def _read(
    dlq_url: str, keep: Callable[[queues.Peeked], bool], limit: int | None
) -> tuple[list[queues.Peeked], list[queues.Peeked]]:
    """Read a DLQ until it is exhausted or `limit` messages are kept: (kept, the others read),
    all still hidden; the caller makes them visible again (`queues.release`)."""
    kept: dict[str, queues.Peeked] = {}
    others: dict[str, queues.Peeked] = {}
    stop_at = time.monotonic() + READ_VISIBILITY_SECONDS / 2
    try:
        while (limit is None or len(kept) < limit) and time.monotonic() < stop_at:
            batch = queues.receive_peeked(dlq_url, READ_VISIBILITY_SECONDS)
            if not batch:
                break
            for message in batch:  # a message read again: only its newest receipt is valid
                kept.pop(message.message_id, None)
                others.pop(message.message_id, None)
                wanted = (limit is None or len(kept) < limit) and keep(message)
                (kept if wanted else others)[message.message_id] = message
    except Exception:
        _release(dlq_url, [*kept.values(), *others.values()])
        raise
    return list(kept.values()), list(others.values())


def _release(dlq_url: str, messages: list[queues.Peeked]) -> None:
    queues.release(dlq_url, [m.receipt_handle for m in messages])


class DeadLetterCalls(AdminCalls):
    """`Jobkit`'s calls on dead-letter queues (its plain `redrive` is `AdminCalls`')."""

    def _queue_urls(self, queue: str) -> tuple[str, str]:
        """(the queue's URL, its DLQ's URL), or `InvalidRequestError` for an unknown queue."""
        try:
            return self.settings.queue_url_of(queue), self.settings.dead_letter_queue_url_of(queue)
        except ConfigurationError as exc:
            raise InvalidRequestError(f"unknown queue {queue!r}: {exc}") from None

    def dead_letters(self, queue: str, limit: int = 50) -> list[DeadLetter]:
        """Up to `limit` of a queue's dead letters, oldest first as SQS gives them, without
        consuming any: every message read is visible again when this returns."""
        _check_limit(limit, optional=False)
        _, dlq_url = self._queue_urls(queue)
        kept, others = _read(dlq_url, lambda _: True, limit)
        _release(dlq_url, kept + others)
        now_ms = int(time.time() * 1000)
        return [_shown(message, now_ms) for message in kept]

    def find_dead_letter(self, queue: str, message_id: str) -> DeadLetter | None:
        """One dead letter by its SQS message id (None if the DLQ has none), not consumed."""
        _, dlq_url = self._queue_urls(queue)
        kept, others = _read(dlq_url, lambda m: m.message_id == message_id, 1)
        _release(dlq_url, kept + others)
        now_ms = int(time.time() * 1000)
        return _shown(kept[0], now_ms) if kept else None

    def redrive(
        self,
        queue: str,
        *,
        job_type: str | None = None,
        reason_contains: str | None = None,
        job_ids: Collection[str] | None = None,
        limit: int | None = None,
        dry_run: bool = False,
    ) -> RedriveResult:
        """Move a queue's dead letters back to it; each job starts again with fresh attempts.

        With no filter, no limit and no dry run, the whole DLQ moves (`AdminCalls.redrive`).
        Otherwise the DLQ is read and only the dead letters of `job_type`, whose reason
        contains `reason_contains` (any case), whose job id is one of `job_ids`, up to
        `limit` of them, are moved, each as a plain redrive moves one; the others are made
        visible again. `dry_run` moves nothing and says how many would move (`matched`)."""
        _check_limit(limit, optional=True)
        chosen = _filter_of(queue, job_type, reason_contains, job_ids)
        if chosen is None and limit is None and not dry_run:
            return super().redrive(queue)  # as before (an unknown queue: ConfigurationError)
        queue_url, dlq_url = self._queue_urls(queue)
        kept, others = _read(dlq_url, chosen or (lambda _: True), limit)
        read = len(kept) + len(others)
        if dry_run:
            _release(dlq_url, kept + others)
            return RedriveResult(queue, 0, matched=len(kept), left=read, dry_run=True)
        moved = self._move_back(queue_url, dlq_url, kept, others)
        return RedriveResult(queue, moved, matched=len(kept), left=read - moved)

    def _move_back(
        self,
        queue_url: str,
        dlq_url: str,
        chosen: list[queues.Peeked],
        others: list[queues.Peeked],
    ) -> int:
        """Send the chosen dead letters back (their jobs reset), delete those sent from the
        DLQ and make the rest visible again; the number moved."""
        try:
            outgoing = [queues.Outgoing(str(i), self._revive(m.body)) for i, m in enumerate(chosen)]
            failed = queues.send_many(queue_url, outgoing)
        except Exception:
            _release(dlq_url, chosen + others)
            raise
        sent = [m for i, m in enumerate(chosen) if str(i) not in failed]
        unsent = [m for i, m in enumerate(chosen) if str(i) in failed]
        queues.delete_many(dlq_url, [m.receipt_handle for m in sent])
        _release(dlq_url, unsent + others)
        if failed:
            raise EnqueueError(
                f"redrive stopped: {len(failed)} messages could not be sent back "
                f"({len(sent)} moved)"
            )
        return len(sent)

    def purge_dead_letters(self, queue: str) -> None:
        """Delete every message in a queue's DLQ (PurgeQueue; SQS takes up to a minute)."""
        _, dlq_url = self._queue_urls(queue)
        queues.purge(dlq_url)
