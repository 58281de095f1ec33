"""Paged listings (`Jobkit.find_jobs`): every job once, newest first, page after page, on both
walks (the sparse `by_state` index and the job pages), with filters, and refused tokens."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import time_machine

from jobkit import InvalidRequestError, JobsPage, JobState, PermanentError, TransientError
from jobkit.client import Jobkit
from jobkit.models import utcnow
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    OTHER,
    Runs,
    body_of,
    deliver,
    make_visible,
    make_worker,
    payload,
    receive_now,
    record_calls,
)


def run_all(stack: Stack, runs: Callable[[Any, Any], Any] | None = None) -> None:
    """A worker runs every waiting job, in batches of ten, in job id order (one page each)."""
    messages = sorted(stack.receive(stack.queue_url), key=lambda m: body_of(m)["id"])
    worker = make_worker(stack, runs or Runs())
    for start in range(0, len(messages), 10):
        deliver(stack, worker, messages[start : start + 10])


def walk(client: Jobkit, limit: int, **filters: Any) -> list[list[str]]:
    """The ids of every page, from the first one to the one without a next token."""
    pages: list[list[str]] = []
    token = None
    while len(pages) < 200:
        page = client.find_jobs(limit=limit, page_token=token, **filters)
        pages.append([job.id for job in page.jobs])
        token = page.next_token
        if token is None:
            return pages
    raise AssertionError("the walk never ended")


def flat(pages: list[list[str]]) -> list[str]:
    return [job_id for page in pages for job_id in page]


def enqueue(stack: Stack, ids: list[str], **options: Any) -> None:
    for job_id in ids:
        job_type = OTHER if job_id.startswith("o-") else ECHO
        stack.client.enqueue(job_type, payload(), job_id=job_id, **options)
        time.sleep(0.002)  # a millisecond of its own: the log's times are in milliseconds


def numbered(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(count)]


def test_paging_the_job_pages_lists_each_job_once_newest_first(stack: Stack) -> None:
    # Given 25 jobs run by three worker batches (three job pages)
    ids = numbered("job-", 25)
    for job_id in ids:
        stack.client.enqueue(ECHO, payload(), job_id=job_id)
        time.sleep(0.002)
    run_all(stack)
    calls = record_calls()
    # When they are listed four at a time
    pages = walk(stack.client, 4)
    # Then every job comes once, newest enqueued first, in full pages but the last
    assert flat(pages) == ids[::-1]
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    # and no page scanned the table
    assert calls.ops["Scan"] == 0


def test_a_retried_job_is_listed_once_across_pages(stack: Stack) -> None:
    # Given 14 jobs in two batches, one of which failed once and ran again in a third batch
    ids = numbered("job-", 14)
    for job_id in ids:
        stack.client.enqueue(ECHO, payload(), job_id=job_id)
    first = sorted(receive_now(stack), key=lambda m: body_of(m)["id"])
    flaky = next(m for m in first if body_of(m)["id"] == "job-03")
    worker = make_worker(stack, Runs())

    def runs(p: Any, ctx: Any) -> None:
        if ctx.job_id == "job-03" and ctx.attempt == 1:
            raise TransientError("busy")

    retrying = make_worker(stack, runs)
    deliver(stack, retrying, first)
    deliver(stack, worker, stack.receive(stack.queue_url))
    make_visible(stack, [flaky])
    deliver(stack, worker, receive_now(stack))
    job = stack.client.get_job("job-03")
    assert job is not None and job.attempts == 2 and job.state is JobState.SUCCEEDED
    # When they are listed three at a time
    pages = walk(stack.client, 3)
    # Then each job is listed exactly once, each page newest enqueued first
    assert sorted(flat(pages)) == ids
    assert all(page == sorted(page, reverse=True) for page in pages)


def test_paging_a_state_lists_each_job_once_newest_first_even_at_one_time(stack: Stack) -> None:
    # Given 32 scheduled jobs: 8 enqueued one after another, then 24 at the very same moment
    # (one `updated_at` for 24 index entries: up to 4 in one of the index's 8 shards)
    apart = numbered("a-", 8)
    enqueue(stack, apart, delay=600)
    together = numbered("t-", 24)
    with time_machine.travel(utcnow(), tick=False):
        for job_id in together:
            stack.client.enqueue(ECHO, payload(), job_id=job_id, delay=600)
    calls = record_calls()
    # When they are listed three at a time (fewer than a shard holds of one moment)
    pages = walk(stack.client, 3, state="scheduled")
    # Then every job comes once: the 24 (newest) first, by id, then the rest newest first
    assert flat(pages) == together[::-1] + apart[::-1]
    assert [len(p) for p in pages] == [3] * 10 + [2]
    # from Queries of the index and batch reads of the jobs, never a Scan
    assert calls.ops["Scan"] == 0
    assert {p["IndexName"] for p in calls.params["Query"]} == {"by_state"}


def test_paging_with_filters_on_both_walks(stack: Stack) -> None:
    # Given jobs of two types and two id families, some failed, all run
    ids = [f"{'o-' if i % 3 == 0 else 'e-'}{i:02d}" for i in range(24)]
    for job_id in ids:
        job_type = OTHER if job_id.startswith("o-") else ECHO
        stack.client.enqueue(job_type, payload(), job_id=job_id)
        time.sleep(0.002)
    fails = {"e-04", "e-05", "e-10", "o-12", "e-16", "e-17", "e-22"}

    def runs(p: Any, ctx: Any) -> None:
        if ctx.job_id in fails:
            raise PermanentError("no")

    run_all(stack, runs)
    # When listing by type (the pages), by id prefix and state (the index), 2 at a time
    others = walk(stack.client, 2, job_type=OTHER)
    failed_echo = walk(stack.client, 2, state="failed", id_prefix="e-")
    succeeded_echo = walk(stack.client, 2, state="succeeded", job_type=ECHO)
    # Then each lists exactly the jobs that match, once, newest first
    assert flat(others) == [i for i in ids if i.startswith("o-")][::-1]
    assert flat(failed_echo) == sorted(i for i in fails if i.startswith("e-"))[::-1]
    expected = [i for i in ids if i.startswith("e-") and i not in fails][::-1]
    assert flat(succeeded_echo) == expected


def test_rare_matches_come_once_even_when_a_page_comes_back_short(stack: Stack) -> None:
    # Given 30 jobs run, of which only three succeed (all are in the job pages)
    ids = numbered("r-", 30)
    for job_id in ids:
        stack.client.enqueue(ECHO, payload(), job_id=job_id)
        time.sleep(0.002)
    winners = {"r-02", "r-17", "r-18"}

    def runs(p: Any, ctx: Any) -> None:
        if ctx.job_id not in winners:
            raise PermanentError("no")

    run_all(stack, runs)
    # When the succeeded ones are listed one at a time (each call reads a bounded window)
    pages = walk(stack.client, 1, state="succeeded")
    # Then each comes once, newest first, some pages empty but followed by a token
    assert flat(pages) == ["r-18", "r-17", "r-02"]
    assert [] in pages[:-1]


def test_the_updated_time_filters(stack: Stack) -> None:
    # Given six jobs that failed one after another
    ids = numbered("f-", 6)
    for job_id in ids:
        stack.client.enqueue(ECHO, payload(), job_id=job_id)
    worker = make_worker(stack, Runs([PermanentError("no")] * 6))
    for message in sorted(receive_now(stack), key=lambda m: body_of(m)["id"]):
        deliver(stack, worker, [message])
        time.sleep(0.002)
    middle = stack.client.get_job("f-03")
    assert middle is not None
    # When listing the failed jobs changed from the middle one's time on, and before it
    since = walk(stack.client, 2, state="failed", updated_after=middle.updated_at)
    before = walk(stack.client, 2, state="failed", updated_before=middle.updated_at)
    # and the same from the job pages (no state: every job the pages name)
    pages_since = walk(stack.client, 2, updated_after=middle.updated_at)
    # Then the bounds split them: at or after, and strictly before
    assert flat(since) == ["f-05", "f-04", "f-03"]
    assert flat(before) == ["f-02", "f-01", "f-00"]
    assert sorted(flat(pages_since)) == ["f-03", "f-04", "f-05"]


def test_a_naive_time_bound_is_refused(stack: Stack) -> None:
    # When a bound has no timezone, then it is bad input naming it
    with pytest.raises(InvalidRequestError, match="updated_after is a timezone-aware"):
        stack.client.find_jobs(updated_after=utcnow().replace(tzinfo=None))


@pytest.fixture
def token(stack: Stack) -> str:
    """The token of the second page of four scheduled jobs listed two at a time."""
    enqueue(stack, numbered("s-", 4), delay=600)
    page = stack.client.find_jobs(state="scheduled", limit=2)
    assert page.next_token is not None
    return page.next_token


def test_a_damaged_or_altered_token_is_refused(stack: Stack, token: str) -> None:
    # Given tokens that are not base64 JSON, cut short, or changed (a position moved)
    decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    decoded["c"]["w"] = 1
    altered = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode()
    for bad in ("not a token", token[: len(token) // 2], altered, "", "x" * 5000):
        # When one is passed back, then it is bad input that says so, not a traceback
        with pytest.raises(InvalidRequestError, match="not a token this listing gave out"):
            stack.client.find_jobs(state="scheduled", limit=2, page_token=bad)


def test_a_token_used_with_other_filters_is_refused(stack: Stack, token: str) -> None:
    # When the token of a listing of scheduled jobs is passed to other listings
    for filters in ({"state": "failed"}, {"state": "scheduled", "id_prefix": "s-0"}, {}):
        # Then each is bad input that names the cause
        with pytest.raises(InvalidRequestError, match="made for other filters"):
            stack.client.find_jobs(limit=2, page_token=token, **filters)  # type: ignore[arg-type]
    # While the same filters (another limit) go on from where the first page ended
    page = stack.client.find_jobs(state="scheduled", limit=5, page_token=token)
    assert isinstance(page, JobsPage)
    assert [j.id for j in page.jobs] == ["s-01", "s-00"] and page.next_token is None


def test_list_jobs_is_the_first_page(stack: Stack) -> None:
    # Given five scheduled jobs
    enqueue(stack, numbered("s-", 5), delay=600)
    # When listing three, then it is the first page's jobs
    first = stack.client.find_jobs(state="scheduled", limit=3)
    assert stack.client.list_jobs(state="scheduled", limit=3) == first.jobs
    assert [j.id for j in first.jobs] == ["s-04", "s-03", "s-02"]
