"""Operator routes on queues: the overview, pause and resume, dead letters (list, peek one,
redrive part or all, purge), recurring schedules, and the health check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query

from jobkit.client import Jobkit
from jobkit.recurring import RecurringSchedule
from jobkit_apps.http_api import calls
from jobkit_apps.http_api.errors import error_responses
from jobkit_apps.http_api.models import (
    DeadLetterOut,
    Health,
    Purge,
    Queues,
    QueueSwitch,
    RedriveOutcome,
    RedriveRequest,
)

ClientOf = Callable[[], Jobkit]
OPERATOR = ["operator"]


def add_routes(app: APIGatewayHttpResolver, client: ClientOf) -> None:
    _queue_routes(app, client)
    _dead_letter_routes(app, client)

    @app.get(
        "/schedules",
        summary="Recurring (cron and rate) schedules, payloads masked",
        tags=OPERATOR,
        responses={200: {"description": "Every recurring schedule"}, **error_responses(503)},
    )
    def list_schedules() -> list[RecurringSchedule]:
        return calls.schedules(client())

    @app.get(
        "/health",
        summary="Whether every queue's oldest message is younger than the threshold",
        tags=OPERATOR,
        responses={
            200: {"description": "Every queue is healthy"},
            503: {"description": "A queue's oldest message is too old (or AWS failed)"},
            **error_responses(),
        },
    )
    def health(
        max_age_seconds: Annotated[
            float | None, Query(gt=0, description="Default: the stack's QueueAgeAlarmSeconds.")
        ] = None,
    ) -> Health:
        found = calls.health(client(), max_age_seconds)
        if found.healthy:
            return found
        return Response(503, content_types.APPLICATION_JSON, found)  # type: ignore[return-value]


def _queue_routes(app: APIGatewayHttpResolver, client: ClientOf) -> None:
    @app.get(
        "/queues",
        summary="Each queue's messages, and the jobs per off-happy-path state",
        tags=OPERATOR,
        responses={200: {"description": "The overview"}, **error_responses(503)},
    )
    def queues() -> Queues:
        return calls.queues(client())

    @app.post(
        "/queues/<queue>/pause",
        summary="Stop the queue's worker receiving (its messages wait in SQS)",
        tags=OPERATOR,
        responses={200: {"description": "Paused"}, **error_responses(400, 404, 503)},
    )
    def pause_queue(queue: str) -> QueueSwitch:
        return calls.switch(client(), unquote(queue), paused=True)

    @app.post(
        "/queues/<queue>/resume",
        summary="Let the queue's worker receive again",
        tags=OPERATOR,
        responses={200: {"description": "Resumed"}, **error_responses(400, 404, 503)},
    )
    def resume_queue(queue: str) -> QueueSwitch:
        return calls.switch(client(), unquote(queue), paused=False)


def _dead_letter_routes(app: APIGatewayHttpResolver, client: ClientOf) -> None:
    @app.get(
        "/queues/<queue>/dead-letters",
        summary="A queue's dead letters, oldest first, without consuming them",
        tags=OPERATOR,
        responses={200: {"description": "Dead letters"}, **error_responses(404, 503)},
    )
    def list_dead_letters(
        queue: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[DeadLetterOut]:
        return calls.dead_letters(client(), unquote(queue), limit)

    @app.get(
        "/queues/<queue>/dead-letters/<message_id>",
        summary="One dead letter by its SQS message id, not consumed",
        tags=OPERATOR,
        responses={200: {"description": "The dead letter"}, **error_responses(404, 503)},
    )
    def get_dead_letter(queue: str, message_id: str) -> DeadLetterOut:
        return calls.dead_letter(client(), unquote(queue), unquote(message_id))

    @app.post(
        "/queues/<queue>/dead-letters/redrive",
        summary="Move dead letters back (all, or those a filter matches, up to a limit)",
        tags=OPERATOR,
        responses={200: {"description": "What moved"}, **error_responses(400, 404, 503)},
    )
    def redrive(queue: str, body: RedriveRequest) -> RedriveOutcome:
        return calls.redrive(client(), unquote(queue), body)

    @app.delete(
        "/queues/<queue>/dead-letters",
        summary="Purge a queue's dead-letter queue (SQS takes up to a minute)",
        tags=OPERATOR,
        responses={200: {"description": "Purging"}, **error_responses(404, 503)},
    )
    def purge_dead_letters(queue: str) -> Purge:
        calls.purge(client(), unquote(queue))
        return Purge(queue=unquote(queue), purging=True)
