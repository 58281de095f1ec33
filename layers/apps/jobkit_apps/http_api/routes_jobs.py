"""Routes on jobs: enqueue one per job type (producers), read one, cancel it; list, retry, run
now, and retry or cancel in bulk (operators). Each parses its request and calls `calls`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from jobkit.client import Jobkit
from jobkit.errors import InvalidRequestError, JobNotFoundError
from jobkit.jobs import JobType, get_job_type, registered_job_types
from jobkit.models import Job, JobState
from jobkit_apps.http_api import calls
from jobkit_apps.http_api.errors import error_responses
from jobkit_apps.http_api.models import BulkFilter, BulkOutcome, JobsPage, enqueue_body

ClientOf = Callable[[], Jobkit]
PRODUCER, OPERATOR = ["producer"], ["operator"]
Time = Annotated[datetime | None, Query(description="ISO 8601 with its UTC offset.")]


def add_enqueue_route(app: APIGatewayHttpResolver, client: ClientOf, job_type: JobType) -> None:
    """`POST /types/<type name>/jobs`: a route of its own per type, so that its body (and so
    the type's payload schema) is in the OpenAPI document. Not under /jobs/: IAM's `*` spans
    "/", so a producer's grant there would reach the operators' /jobs/{id}/retry too."""
    path = f"/types/{job_type.name}/jobs"

    def enqueue(body: Any) -> Job:
        if unquote(app.current_event.path) != path:  # a route's rule is a regex: "." is any
            _no_route(unquote(app.current_event.path).split("/")[2])
        job, created = calls.enqueue(client(), job_type, body)
        if created:
            return job
        return Response(200, content_types.APPLICATION_JSON, job)  # type: ignore[return-value]

    enqueue.__annotations__ = {
        "body": Annotated[enqueue_body(job_type), Body(embed=False)],
        "return": Job,
    }
    enqueue.__name__ = enqueue.__qualname__ = "enqueue_" + job_type.name
    app.post(
        path,
        status_code=201,
        summary=f"Enqueue one {job_type.name} job",
        description=job_type.description or None,
        operation_id="enqueue_" + re.sub(r"\W+", "_", job_type.name),
        tags=PRODUCER,
        responses={
            201: {"description": "A new job, enqueued"},
            200: {"description": "The job that already had this job_id; nothing was sent"},
            **error_responses(400, 404, 413, 503),
        },
    )(enqueue)


def _no_route(name: str) -> None:
    """Refuse a type name no enqueue route matched exactly: unknown (404), or a name that a
    route cannot hold (400)."""
    found = get_job_type(name)
    raise InvalidRequestError(
        f"job type {found.name!r} has no route of its own (its name is not a plain path "
        "segment): enqueue it with the library"
    )


def add_routes(app: APIGatewayHttpResolver, client: ClientOf) -> None:
    for job_type in sorted(registered_job_types().values(), key=lambda t: t.name):
        add_enqueue_route(app, client, job_type)
    _producer_routes(app, client)
    _operator_routes(app, client)


def _producer_routes(app: APIGatewayHttpResolver, client: ClientOf) -> None:
    @app.post("/types/<job_type>/jobs", include_in_schema=False)
    def enqueue_unknown(job_type: str) -> None:
        _no_route(unquote(job_type))

    @app.get(
        "/jobs/<job_id>",
        summary="A job: state, attempts, times, result, error (payload masked)",
        tags=PRODUCER,
        responses={200: {"description": "The job"}, **error_responses(400, 404, 503)},
    )
    def get_job(job_id: str) -> Job:
        job = client().get_job(unquote(job_id))
        if job is None:
            raise JobNotFoundError(f"no job {unquote(job_id)!r} in the job log")
        return calls.masked_job(job)

    @app.post(
        "/jobs/<job_id>/cancel",
        summary="Cancel a scheduled, queued or retrying job: it will never run",
        tags=PRODUCER,
        responses={200: {"description": "The job, cancelled"}, **error_responses(400, 404, 409)},
    )
    def cancel_job(job_id: str) -> Job:
        return calls.masked_job(client().cancel(unquote(job_id)))


def _operator_routes(app: APIGatewayHttpResolver, client: ClientOf) -> None:
    @app.post(
        "/jobs/<job_id>/retry",
        summary="Run a failed job again, with fresh attempts",
        tags=OPERATOR,
        responses={200: {"description": "The job, queued"}, **error_responses(400, 404, 409)},
    )
    def retry_job(job_id: str) -> Job:
        return calls.masked_job(client().retry(unquote(job_id)))

    @app.post(
        "/jobs/<job_id>/run-now",
        summary="Run a scheduled job now instead of at its due time",
        tags=OPERATOR,
        responses={200: {"description": "The job, queued"}, **error_responses(400, 404, 409)},
    )
    def run_job_now(job_id: str) -> Job:
        return calls.masked_job(client().run_now(unquote(job_id)))

    @app.get(
        "/jobs",
        summary="List jobs, newest first, a page at a time",
        tags=OPERATOR,
        responses={200: {"description": "A page of jobs"}, **error_responses(400, 503)},
    )
    def list_jobs(
        state: Annotated[JobState | None, Query()] = None,
        job_type: Annotated[str | None, Query(alias="type")] = None,
        queue: Annotated[str | None, Query()] = None,
        id_prefix: Annotated[str | None, Query(min_length=1)] = None,
        created_after: Time = None,
        created_before: Time = None,
        updated_after: Time = None,
        updated_before: Time = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: Annotated[str | None, Query(description="A next_token.")] = None,
    ) -> JobsPage:
        times = {
            "created_after": created_after,
            "created_before": created_before,
            "updated_after": updated_after,
            "updated_before": updated_before,
        }
        return calls.find_jobs(
            client(), state, job_type, queue, limit, times, id_prefix, page_token
        )

    for action in ("retry", "cancel"):
        _bulk_route(app, client, action)


def _bulk_route(app: APIGatewayHttpResolver, client: ClientOf, action: str) -> None:
    which = "failed" if action == "retry" else "scheduled, queued or retrying"

    def bulk(body: BulkFilter) -> BulkOutcome:
        return calls.bulk(client(), action, body)

    bulk.__annotations__ = {"body": BulkFilter, "return": BulkOutcome}
    bulk.__name__ = bulk.__qualname__ = f"{action}_many"
    app.post(
        f"/bulk/{action}",
        summary=f"{action.capitalize()} every {which} job a filter matches (dry_run: only say)",
        tags=OPERATOR,
        responses={200: {"description": "What it matched and did"}, **error_responses(400, 503)},
    )(bulk)
