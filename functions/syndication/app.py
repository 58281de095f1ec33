"""Syndication worker handler: SQS batch in, `batchItemFailures` out (see syndication_worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobkit.observability import logger
from syndication_worker.processors import worker

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return worker.handle(event, context)
