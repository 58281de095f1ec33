"""The Jobs HTTP API as one Powertools Event Handler resolver, and its OpenAPI document.

`build_app(client)` registers every route on a new `APIGatewayHttpResolver` (request
validation on) for the job types declared at that moment: `load_job_types` first declares the
built-in apps' types and those of the modules named in JOBKIT_TYPES, as the CLI does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from jobkit.client import Jobkit
from jobkit.observability import REDUNDANT_KEYS, logger
from jobkit_apps.http_api import errors, routes_jobs, routes_queues

BUILT_IN_TYPES = (
    "jobkit_apps.email",
    "jobkit_apps.nightly",
    "jobkit_apps.reminders",
    "jobkit_apps.syndication",
)
TITLE = "jobkit Jobs API"
DESCRIPTION = (
    "Enqueue typed jobs and operate them over HTTP. Every route needs a request signed with "
    "AWS Signature Version 4 (service `execute-api`) by a principal allowed to invoke it: "
    "the stack's JobsApiProducerPolicy (enqueue, read, cancel) or JobsApiOperatorPolicy (all "
    'routes). Errors are `{"error": {"code", "message"}}`.'
)


def load_job_types(extra: str = "") -> None:
    """Declare the built-in apps' job types and those of `extra` (comma-separated modules:
    the JOBKIT_TYPES setting)."""
    for module in (*BUILT_IN_TYPES, *filter(None, (m.strip() for m in extra.split(",")))):
        importlib.import_module(module)


def build_app(client: Callable[[], Jobkit]) -> APIGatewayHttpResolver:
    """Every route, for the job types declared now; `client()` gives the `Jobkit` a request
    uses (called per request: the deployed function's is built once, on first use)."""
    app = APIGatewayHttpResolver(enable_validation=True)
    app.use(middlewares=[_lean_logs])
    errors.register(app)
    routes_jobs.add_routes(app, client)
    routes_queues.add_routes(app, client)
    return app


def _lean_logs(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Log lines leave out what the function's log group already says, as workers' do."""
    logger.remove_keys(REDUNDANT_KEYS)
    return next_middleware(app)


def openapi_json(app: APIGatewayHttpResolver) -> str:
    """The OpenAPI 3.1 document of `app` (JSON), with the SigV4 requirement on every route."""
    # Powertools' OpenAPI document models take ~55 ms to build: only the document needs them,
    # not a request (the deployed function never loads them).
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    sigv4 = APIKey(
        name="Authorization",
        in_=APIKeyIn.header,
        description="AWS Signature Version 4 (service execute-api), e.g. curl --aws-sigv4.",
    )
    return app.get_openapi_json_schema(
        title=TITLE,
        version=_version(),
        description=DESCRIPTION,
        security_schemes={"sigv4": sigv4},
        security=[{"sigv4": []}],
    )


def _version() -> str:
    try:
        return importlib.metadata.version("jobkit")
    except importlib.metadata.PackageNotFoundError:  # in a Lambda layer: no distribution
        return "0"
