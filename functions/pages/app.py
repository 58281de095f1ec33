"""Job pages handler: a batch of the job log's stream records (INSERTs) in, one page per queue
of the jobs they created written (see jobkit.pages_feed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source

from jobkit.observability import logger
from jobkit.pages_feed import feed

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=DynamoDBStreamEvent)
def lambda_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, int]:
    return feed.handle(event)
