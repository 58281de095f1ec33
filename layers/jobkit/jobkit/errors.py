"""Every error jobkit raises. Producers catch `JobkitError` (`InvalidRequestError` for input
that is wrong: fix the call, do not retry it); processors raise `PermanentError`,
`TransientError` and `OutcomeUnknownError`."""

from __future__ import annotations


class JobkitError(Exception):
    """Base of every jobkit error."""


class ConfigurationError(JobkitError):
    """Settings are missing or wrong (no table, no URL for a queue, ...)."""


class DeclarationError(JobkitError, ValueError):
    """A job type or worker is declared wrongly (a bad name, timeout, queue, ...)."""


class InvalidRequestError(JobkitError, ValueError):
    """The caller's input is wrong (a job id, a payload, a delay, a type name): the same call
    will fail again. The CLI exits 2 on these, the HTTP API answers 4xx."""


class InvalidJobIdError(InvalidRequestError):
    """A job id that is empty, too long or has characters outside the allowed ones."""


class JobValidationError(InvalidRequestError):
    """A payload does not match its job type's model. Names each bad field."""

    def __init__(self, job_type: str, errors: list[str]) -> None:
        self.job_type = job_type
        self.errors = errors
        super().__init__(f"invalid payload for {job_type}: " + "; ".join(errors))


class UnknownJobTypeError(InvalidRequestError):
    """No job type of that name is declared."""


class EnvelopeTooLargeError(InvalidRequestError):
    """The job's message would exceed the SQS message size limit."""


class InvalidScheduleError(InvalidRequestError):
    """A delay, run time or schedule that cannot be honoured (negative, naive datetime, both
    given, an expression AWS would reject, an unknown timezone)."""


# Why a job that was enqueued may not be in the log (README "Tracking modes").
NOT_IN_LOG_HINT = (
    "(a job of a type with tracking 'light' or 'failures' is not in the log until it runs; "
    "with 'failures', a job that succeeded at once never is)"
)


class JobNotFoundError(JobkitError):
    """No job with that id is in the job log. The message ends with `NOT_IN_LOG_HINT`: a job
    that was enqueued may not be there yet, or ever, by its type's tracking."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} {NOT_IN_LOG_HINT}")


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


class OutcomeUnknownError(TransientError):
    """Raised by a processor (or an adapter) when a side effect may or may not have happened:
    the request went out and no answer came back (a read timeout, a reset connection). An
    `at_least_once` job type retries it; an `at_most_once` one fails it as "outcome unknown"
    for a person to check, and never runs it again."""


class LeaseLostError(JobkitError):
    """`JobContext.heartbeat()` found that this attempt no longer holds the job (its lease
    passed and another attempt took it over, or the job was finished meanwhile): stop."""


class ServiceError(JobkitError):
    """An AWS call failed (throttled, denied, not found, unreachable, no credentials):
    `operation` and `code` say which; the botocore error is its `__cause__`. Input errors are
    `InvalidRequestError`s, found before any call."""

    def __init__(self, message: str, *, operation: str = "", code: str = "") -> None:
        super().__init__(message)
        self.operation, self.code = operation, code


class ScheduleNotFoundError(JobkitError):
    """No recurring schedule of that name."""
