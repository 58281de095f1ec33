"""The one place where errors become HTTP answers: `{"error": {"code", "message"}}` with the
status that fits. jobkit's own errors map by class (the first match in `STATUS` wins); the
Event Handler's validation errors become the same shape, built from each error's location and
message only, never its input (it may be an email address)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.exceptions import ServiceError as HttpError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    ValidationException,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from jobkit.errors import (
    ConfigurationError,
    EnqueueError,
    EnvelopeTooLargeError,
    InvalidJobIdError,
    InvalidRequestError,
    InvalidScheduleError,
    InvalidStateError,
    JobkitError,
    JobNotFoundError,
    JobValidationError,
    ScheduleNotFoundError,
    ServiceError,
    UnknownJobTypeError,
)
from jobkit.observability import logger
from jobkit.redact import redact
from jobkit_apps.http_api.models import ErrorBody, ErrorDetail


class UnknownQueueError(InvalidRequestError):
    """No declared job type runs on that queue, and the settings name no such queue."""


class DeadLetterNotFoundError(JobkitError):
    """No message with that id in the queue's dead-letter queue."""


# Most specific first: (class, HTTP status, code).
STATUS: list[tuple[type[JobkitError], int, str]] = [
    (UnknownJobTypeError, 404, "unknown_job_type"),
    (UnknownQueueError, 404, "unknown_queue"),
    (JobValidationError, 422, "invalid_payload"),
    (EnvelopeTooLargeError, 413, "too_large"),
    (InvalidJobIdError, 400, "invalid_job_id"),
    (InvalidScheduleError, 400, "invalid_schedule"),
    (InvalidRequestError, 400, "invalid_request"),
    (JobNotFoundError, 404, "job_not_found"),
    (ScheduleNotFoundError, 404, "schedule_not_found"),
    (DeadLetterNotFoundError, 404, "dead_letter_not_found"),
    (InvalidStateError, 409, "invalid_state"),
    (EnqueueError, 503, "enqueue_failed"),
    (ServiceError, 503, "aws_error"),
    (ConfigurationError, 500, "configuration_error"),
    (JobkitError, 500, "jobkit_error"),
]

DESCRIPTIONS = {
    400: "Bad input (the same request fails again)",
    404: "Unknown job, job type, queue or schedule",
    409: "The job is not in a state that allows it",
    413: "The job's message would be over 256 KiB",
    422: "The request does not match its schema",
    503: "An AWS call failed (throttled, denied, unreachable): try again",
}


def status_of(exc: JobkitError) -> tuple[int, str]:
    return next((status, code) for kind, status, code in STATUS if isinstance(exc, kind))


def error_response(status: int, code: str, message: str) -> Response[Any]:
    body = ErrorBody(error=ErrorDetail(code=code, message=redact(message)))
    return Response(status, content_types.APPLICATION_JSON, body.model_dump_json())


def error_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI entries of a route's error answers (every route may answer 422)."""
    return {
        status: {
            "description": DESCRIPTIONS[status],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}},
        }
        for status in sorted({422, *statuses})
    }


def _invalid(exc: ValidationException) -> Response[Any]:
    if isinstance(exc, RequestUnsupportedContentType):
        return error_response(415, "unsupported_media_type", "send the body as application/json")
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ())) or 'request'}: {error.get('msg')}"
        for error in exc.errors()
    ]
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


def _jobkit(exc: JobkitError) -> Response[Any]:
    status, code = status_of(exc)
    if status >= 500:
        logger.warning("request failed", extra={"code": code, "error": redact(str(exc))})
    return error_response(status, code, str(exc))


def _not_found(exc: NotFoundError) -> Response[Any]:
    return error_response(404, "not_found", "no such route: see the OpenAPI document")


def _http(exc: HttpError) -> Response[Any]:
    return error_response(exc.status_code, "http_error", str(exc.msg))


def _unexpected(exc: Exception) -> Response[Any]:
    logger.exception("unexpected error")
    return error_response(500, "internal_error", "internal error (logged)")


def register(app: APIGatewayHttpResolver) -> None:
    """Answer every error with an `ErrorBody` (the resolver looks handlers up by class)."""
    app.exception_handler(ValidationException)(_invalid)
    app.exception_handler(JobkitError)(_jobkit)
    app.exception_handler(NotFoundError)(_not_found)
    app.exception_handler(HttpError)(_http)
    app.exception_handler(Exception)(_unexpected)
