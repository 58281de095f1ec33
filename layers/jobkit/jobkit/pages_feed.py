"""Job pages fed by the job log's DynamoDB stream: one page per queue per stream batch, naming
the jobs the batch saw created, so that a job still waiting in its queue (queued, or scheduled
for later) is listed before any worker claims it.

They name the jobs each item INSERT created: an enqueue (tracking `full`), the claim that
adopts a job (`light`), the first failure (`failures`); the deployed workers write no pages of
their own (`Settings.pages_from_stream`). They are written off the hot path, by the
`JobPagesFunction` of template.yaml: Lambda hands it up to 1,000 INSERT records gathered over
up to 10 s (the event source mapping's filter drops every other record before an invocation).
A page that cannot be written fails the invocation, so Lambda retries the batch (split in two)
and at last records it in the stack's failure queue. A retried batch can name a job on two
pages; a listing shows it once (`jobkit.job_listing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobkit.errors import ServiceError
from jobkit.observability import REDUNDANT_KEYS, logger
from jobkit.settings import Settings, get_settings
from jobkit.store_pages import JobPages

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

# What the (type, id) pairs of one page may take: a DynamoDB item is at most 400 KB, and the
# page's key, expiry and list overhead fit in the rest.
MAX_PAGE_BYTES = 350_000
# Bytes DynamoDB counts for one pair besides its two strings (list and element overheads).
ENTRY_OVERHEAD = 8
# Jobs a page names at most: a listing reads whole pages (and the jobs they name), so a page
# of a thousand would make a page of 50 jobs read a thousand. Write units are per KB, so
# smaller pages cost the same but for rounding (under 1 write unit a page).
MAX_PAGE_JOBS = 100

Jobs = list[tuple[str, str]]  # (job type, job id)


class JobImage(BaseModel):
    """What a page needs of a job item's NEW_IMAGE (the stream record's image of it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    pk: str = Field(min_length=1)
    type: str = Field(min_length=1)
    queue: str = Field(min_length=1)


def inserted(event: DynamoDBStreamEvent) -> tuple[dict[str, Jobs], int]:
    """The (type, id) of every job the batch's INSERT records created, by queue, in stream
    order; and how many INSERT records were not of a job item (and are left out). Records of
    other events (MODIFY, REMOVE) are not INSERTs and are passed over."""
    by_queue: dict[str, Jobs] = {}
    skipped = 0
    for record in event.records:
        if record.event_name is None or record.event_name.name != "INSERT":
            continue
        try:
            image = JobImage.model_validate(record.dynamodb.new_image if record.dynamodb else {})
        except (ValidationError, TypeError):
            skipped += 1
            continue
        by_queue.setdefault(image.queue, []).append((image.type, image.pk))
    return by_queue, skipped


def split(jobs: Jobs, limit: int = MAX_PAGE_BYTES) -> list[Jobs]:
    """`jobs` cut into pages of at most MAX_PAGE_JOBS jobs and `limit` bytes (as DynamoDB
    counts an item's size), in order."""
    pages: list[Jobs] = []
    size = 0
    for job_type, job_id in jobs:
        entry = len(job_type.encode()) + len(job_id.encode()) + ENTRY_OVERHEAD
        if not pages or size + entry > limit or len(pages[-1]) >= MAX_PAGE_JOBS:
            pages.append([])
            size = 0
        pages[-1].append((job_type, job_id))
        size += entry
    return pages


class PagesFeed:
    """Writes the pages of one stream batch (`handle`). Settings are the environment's unless
    given (JOBKIT_PAGES_TABLE), read on first use."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @property
    def pages(self) -> JobPages:
        settings = self._settings or get_settings()
        return JobPages(settings.require_pages_table())

    def handle(self, event: DynamoDBStreamEvent) -> dict[str, int]:
        """Write one page per queue of the jobs the batch created (more if a page would be too
        large). A page that cannot be written raises `ServiceError`, failing the batch, so
        that Lambda retries it; the pages written before it are written again then."""
        logger.remove_keys(REDUNDANT_KEYS)  # the log group says them
        by_queue, skipped = inserted(event)
        if skipped:
            logger.warning(
                "stream records skipped",
                extra={"records": skipped, "reason": "not a job item (pk, type, queue)"},
            )
        pages = self.pages
        written = 0
        for queue, jobs in by_queue.items():
            for page in split(jobs):
                try:
                    pages.write(queue, page)
                except ServiceError as exc:
                    logger.error(
                        "job page not written",
                        extra={"queue": queue, "jobs": len(page), "error": str(exc)},
                    )
                    raise
                written += 1
        jobs_named = sum(len(jobs) for jobs in by_queue.values())
        logger.debug("job pages written", extra={"pages": written, "jobs": jobs_named})
        return {"pages": written, "jobs": jobs_named}


feed = PagesFeed()
