"""Job pages: which jobs were created (or claimed), per queue, newest first.

The job log's key is the job id alone, so listing a queue's or a type's recent jobs without a
Scan needs an index. A secondary-index entry written with every job costs a write unit per
job, a third of what a job's own three writes cost. Instead a page is written to the pages
table per batch: key = the queue, sort key = when it was written (+ a random tail), one item
holding the (type, id) of every job of the batch: one write unit per KB, about 15 jobs. In a
deployed stack the job log's stream writes them, naming the jobs each stream batch saw
created (`jobkit.pages_feed`); where nothing reads the stream, each worker batch names the
jobs it claimed (`Settings.pages_from_stream` false). Jobs in off-happy-path states
(scheduled, retrying, failed, cancelled) are also in the job log's sparse `by_state` index
from the moment they get there.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from jobkit import aws
from jobkit.items import n, s
from jobkit.models import iso, utcnow

# Pages outlive every default retention of the jobs they point at (failed: 30 days); a job
# kept longer is still found by id, and listed by state while it is off the happy path.
PAGE_RETENTION = timedelta(days=90)


class JobPages:
    """Adapter over the pages table. Its public calls raise `ServiceError` for a failed AWS
    call."""

    def __init__(self, table: str) -> None:
        self.table = table

    @aws.service_errors
    def write(self, queue: str, jobs: list[tuple[str, str]]) -> None:
        """One page: the (type, id) of the jobs of `queue` a stream batch saw created (or a
        worker batch claimed)."""
        now = utcnow()
        aws.dynamodb().put_item(
            TableName=self.table,
            Item={
                "queue": s(queue),
                "page": s(f"{iso(now)}#{secrets.token_hex(4)}"),
                "jobs": {"L": [{"L": [s(job_type), s(job_id)]} for job_type, job_id in jobs]},
                "expires_at": n(int((now + PAGE_RETENTION).timestamp())),
            },
        )
