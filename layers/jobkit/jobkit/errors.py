"""Every error jobkit raises. Producers catch `JobkitError`; processors raise the last two."""

from __future__ import annotations


class JobkitError(Exception):
    """Base of every jobkit error."""


class ConfigurationError(JobkitError):
    """Settings are missing or wrong (no table, no URL for a queue, ...)."""


class JobValidationError(JobkitError):
    """A payload does not match its job type's model. Names each bad field."""

    def __init__(self, job_type: str, errors: list[str]) -> None:
        self.job_type = job_type
        self.errors = errors
        super().__init__(f"invalid payload for {job_type}: " + "; ".join(errors))


class UnknownJobTypeError(JobkitError):
    """No job type of that name is declared."""


class EnvelopeTooLargeError(JobkitError):
    """The job's message would exceed the SQS message size limit."""


class InvalidScheduleError(JobkitError):
    """A delay, run time or schedule that cannot be honoured (negative, naive datetime, both
    given, an expression AWS would reject, an unknown timezone)."""


class JobNotFoundError(JobkitError):
    """No job with that id is in the job log."""


class InvalidStateError(JobkitError):
    """The job is not in a state that allows the operation (retry a running job, ...)."""


class EnqueueError(JobkitError):
    """The job could not be sent; the job log records it as failed with the reason."""


class PermanentError(JobkitError):
    """Raised by a processor: retrying cannot help. The job fails and goes to the DLQ at once."""


class TransientError(JobkitError):
    """Raised by a processor: try again later, after `retry_after` seconds if the cause says so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ScheduleNotFoundError(JobkitError):
    """No recurring schedule of that name."""
