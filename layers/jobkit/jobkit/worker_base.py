"""What a worker holds: its queue, the processors and admissions registered for it, its
settings and job log, and the counts of the batch in hand (flushed as metrics)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aws_lambda_powertools.metrics import MetricUnit

from jobkit.errors import DeclarationError, ServiceError
from jobkit.job_context import Admission, Processor
from jobkit.jobs import JobType
from jobkit.observability import logger, metrics
from jobkit.settings import Settings, get_settings
from jobkit.store import JobLog
from jobkit.store_pages import JobPages

P = TypeVar("P", bound=Processor)
A = TypeVar("A", bound=Admission)


@dataclass
class Stats:
    """A job type's counts in the batch in hand."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    durations: list[float] = field(default_factory=list)


class WorkerBase:
    """The registrations, settings and counters of `jobkit.worker.Worker`."""

    def __init__(self, queue: str, settings: Settings | None = None) -> None:
        self.queue = queue
        self._settings = settings
        self._types: dict[str, tuple[JobType, Processor]] = {}
        self._admissions: dict[str, Admission] = {}
        self._log: JobLog | None = None
        self._stats: dict[str, Stats] = defaultdict(Stats)
        self._claimed: list[tuple[str, str]] = []  # (type, id) of the jobs the batch claimed

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
        return the ones it had. For test harnesses such as `jobkit_tools.testing`, which host
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

    def _write_page(self) -> None:
        """One page of the jobs this batch claimed, for listings (see `jobkit.store_pages`)."""
        claimed, self._claimed = self._claimed, []
        if not claimed or not self.settings.pages_table or self.settings.pages_from_stream:
            return  # the stream's page of each job's creation lists it
        try:
            JobPages(self.settings.pages_table).write(self.queue, claimed)
        except ServiceError as exc:
            # The jobs and their outcomes are in the log; only listings by queue miss them.
            logger.warning("job page not written", extra={"jobs": len(claimed), "error": str(exc)})

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
