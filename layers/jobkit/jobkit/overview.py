"""The overview calls of `jobkit.client.Jobkit`: how many messages each queue holds, and how
many jobs the job log has in each off-happy-path state.

Kept simple on purpose: the per-queue figures are SQS's own (one `GetQueueAttributes` per
queue and per dead-letter queue); the job counts are per state across all queues, from the
sparse `by_state` index (one `Select=COUNT` Query per shard and state, no item read). That
index is keyed by state and holds keys only, so a count per queue would need every item.
Never a Scan. The age of each queue's oldest message is CloudWatch's (SQS has no attribute
for it): one `GetMetricData` for all queues of an overview (`jobkit.metrics_reads`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jobkit import mappings, metrics_reads
from jobkit.errors import ConfigurationError, InvalidRequestError, ServiceError
from jobkit.jobs import registered_job_types
from jobkit.queues import approximate_counts, arn_of
from jobkit.settings import Settings
from jobkit.store import BY_STATE, INDEXED_STATES, JobLog


@dataclass(frozen=True)
class QueueOverview:
    """SQS's approximate counts of one queue."""

    queue: str
    waiting: int  # ApproximateNumberOfMessages
    in_flight: int  # ApproximateNumberOfMessagesNotVisible: received, not yet deleted
    delayed: int  # ApproximateNumberOfMessagesDelayed
    dead_letters: int | None  # its DLQ's ApproximateNumberOfMessages; None: no DLQ
    # its worker's event source mapping disabled (`pause_queue`); None: no mapping reads the
    # queue, or the caller may not list them (lambda:ListEventSourceMappings)
    paused: bool | None = None
    # CloudWatch's AWS/SQS ApproximateAgeOfOldestMessage (newest datapoint, Maximum), in
    # seconds; None: no datapoint yet, or the caller may not read metrics
    oldest_age_seconds: float | None = None


@dataclass(frozen=True)
class JobCounts:
    """Jobs in the job log per off-happy-path state, across all queues."""

    scheduled: int
    retrying: int
    failed: int
    cancelled: int


class OverviewCalls:
    """`Jobkit`'s overview calls."""

    settings: Settings
    log: JobLog

    def queue_overview(self, queues: list[str] | None = None) -> list[QueueOverview]:
        """SQS's counts for `queues` (default: the queues of the job types declared in this
        process that the settings can find, sorted). A name neither declared nor in the
        settings is an `InvalidRequestError`; a queue SQS does not have, a
        `ConfigurationError`. Job counts by state: `state_counts`."""
        declared = {t.queue for t in registered_job_types().values()}
        if queues is None:
            names = sorted(q for q in declared if self._locatable(q))
        else:
            known = declared | set(self.settings.queues)
            unknown = [q for q in queues if q not in known]
            if unknown:
                raise InvalidRequestError(
                    f"unknown queue {unknown[0]!r} (known: {', '.join(sorted(known)) or 'none'})"
                )
            names = list(dict.fromkeys(queues))
        found = [self._overview_of(name) for name in names]
        ages = _oldest_ages([self.settings.queue_url_of(q.queue) for q in found])
        return [replace(q, oldest_age_seconds=age) for q, age in zip(found, ages, strict=True)]

    def state_counts(self) -> JobCounts:
        """How many jobs are scheduled, retrying, failed and cancelled, across all queues:
        `Select=COUNT` Queries of the sparse `by_state` index (8 shards a state)."""
        counts = {
            state.value: self.log.count_index(BY_STATE, state.value) for state in INDEXED_STATES
        }
        return JobCounts(**counts)

    def _locatable(self, queue: str) -> bool:
        return queue in self.settings.queues or bool(self.settings.queue_url_prefix)

    def _overview_of(self, queue: str) -> QueueOverview:
        url = self.settings.queue_url_of(queue)
        counts = approximate_counts(url)
        if counts is None:
            raise ConfigurationError(f"queue {queue!r} does not exist at {url}")
        dlq_url = self.settings.dead_letter_queue_url_or_none(queue)
        dlq = approximate_counts(dlq_url) if dlq_url else None
        return QueueOverview(
            queue=queue,
            waiting=counts["waiting"],
            in_flight=counts["in_flight"],
            delayed=counts["delayed"],
            dead_letters=dlq["waiting"] if dlq is not None else None,
            paused=_paused(url),
        )


def _oldest_ages(queue_urls: list[str]) -> list[float | None]:
    """CloudWatch's age of each queue's oldest message, read for all queues in one call
    (None: no datapoint in the last minutes, or the caller may not read metrics)."""
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in queue_urls]
    try:
        ages = metrics_reads.oldest_message_ages(names)
    except ServiceError:  # an operator without cloudwatch:GetMetricData still gets the counts
        return [None] * len(names)
    return [ages.get(name) for name in names]


def _paused(queue_url: str) -> bool | None:
    """Whether every mapping that reads the queue is disabled (None: none, or not allowed)."""
    try:
        found = mappings.of_queue(arn_of(queue_url))
    except ServiceError:  # an operator without Lambda read access still gets the counts
        return None
    if not found:
        return None
    return all(m.get("State") in ("Disabled", "Disabling") for m in found)
