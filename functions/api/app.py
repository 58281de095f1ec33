"""Jobs HTTP API handler: an API Gateway HTTP API (payload 2.0) request in, its answer out
(routes and logic: jobkit_apps.http_api)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobkit.observability import logger
from jobkit_apps.http_api.deployed import api

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
