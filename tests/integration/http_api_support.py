"""Driving the Jobs HTTP API's resolver with the events API Gateway sends (payload 2.0, built
by the same code the local stack's server uses), on a mock_aws stack."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from jobkit_apps.http_api.resolver import build_app, load_job_types
from jobkit_tools.local.http_api_event import Request, Route, payload_event
from tests.conftest import Stack, lambda_context

INVITE = {
    "to": "ada@example.com",
    "inviter_name": "Grace",
    "org_name": "Engines",
    "accept_url": "https://app.example.com/i/42",
}


def event(
    method: str,
    path: str,
    body: Any = None,
    query: str = "",
    content_type: str = "application/json",
) -> dict[str, Any]:
    """The event of a signed request (`body`: JSON-able, or raw bytes as sent)."""
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    headers = [("Content-Type", content_type), ("Host", "api.example.com")]
    request = Request(method, path, query, headers, raw, "192.0.2.1", "api.example.com")
    route = Route("JobsApi", method, path, "ApiFunction", iam=True)
    return payload_event(request, route, {}, "AKIDEXAMPLE")


@dataclass
class Api:
    """The resolver over a stack's client, and the answers it gives."""

    app: APIGatewayHttpResolver

    @classmethod
    def over(cls, stack: Stack) -> Api:
        load_job_types()
        return cls(build_app(lambda: stack.client))

    def call(self, method: str, path: str, body: Any = None, **options: Any) -> tuple[int, Any]:
        answer = self.app.resolve(event(method, path, body, **options), lambda_context("Api"))
        assert answer["headers"]["Content-Type"] == "application/json"
        return int(answer["statusCode"]), json.loads(answer["body"])


def log_items() -> list[dict[str, Any]]:
    """Every item of the job log (a Scan: fine on moto)."""
    return list(boto3.client("dynamodb").scan(TableName="jobs")["Items"])


def messages(stack: Stack) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())
