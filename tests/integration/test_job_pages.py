"""Listings without a per-job index write: each worker batch writes one page of the jobs it
claimed (`jobkit.store_pages`)."""

from __future__ import annotations

import boto3
import pytest

from jobkit import JobState, TransientError
from tests.conftest import Stack

from .test_core_support import (
    ECHO,
    OTHER,
    Runs,
    deliver,
    make_visible,
    make_worker,
    payload,
    receive_now,
    record_calls,
)


def test_a_batch_of_ten_jobs_writes_one_page_that_lists_them(stack: Stack) -> None:
    # Given ten jobs of two types in the queue
    for i in range(10):
        stack.client.enqueue(ECHO if i % 2 else OTHER, payload(i), job_id=f"page-{i}")
    messages = receive_now(stack)
    assert len(messages) == 10
    calls = record_calls()
    # When one worker batch runs them all
    assert deliver(stack, make_worker(stack, Runs()), messages) == []
    # Then the batch wrote one page (one PutItem, to the pages table) besides the job log
    pages = [p for p in calls.params["PutItem"] if p["TableName"] == "pages"]
    assert len(pages) == 1
    assert len(pages[0]["Item"]["jobs"]["L"]) == 10
    # And the listings by type and by queue find every job, with no Scan
    echo = stack.client.list_jobs(job_type=ECHO)
    assert sorted(j.id for j in echo) == [f"page-{i}" for i in (1, 3, 5, 7, 9)]
    assert {j.state for j in echo} == {JobState.SUCCEEDED}
    assert len(stack.client.list_jobs(queue="email")) == 10
    assert calls.ops["Scan"] == 0


def test_a_job_claimed_twice_is_listed_once(stack: Stack) -> None:
    # Given a job that fails once, then succeeds: two batches claim it, two pages name it
    stack.client.enqueue(ECHO, payload(), job_id="twice")
    worker = make_worker(stack, Runs([TransientError("busy")]))
    first = receive_now(stack)
    deliver(stack, worker, first)
    make_visible(stack, first)
    deliver(stack, worker, receive_now(stack))
    # When listing the type
    listed = stack.client.list_jobs(job_type=ECHO)
    # Then the job is there once, as it is now
    assert [(j.id, j.state, j.attempts) for j in listed] == [("twice", JobState.SUCCEEDED, 2)]


def test_a_page_that_cannot_be_written_loses_no_job(
    stack: Stack, stdout: pytest.CaptureFixture[str]
) -> None:
    # Given a stack whose pages table is gone
    boto3.client("dynamodb").delete_table(TableName="pages")
    stack.client.enqueue(ECHO, payload(), job_id="no-page")
    # When a batch runs the job
    failures = deliver(stack, make_worker(stack, Runs()), receive_now(stack))
    # Then the job succeeded and its message is done with: only the listing misses it
    assert failures == []
    job = stack.client.get_job("no-page")
    assert job is not None and job.state is JobState.SUCCEEDED
    assert receive_now(stack) == []
    # And the worker said so, once
    assert stdout.readouterr().out.count("job page not written") == 1


def test_listings_filter_by_id_prefix_and_enqueue_time(stack: Stack) -> None:
    # Given jobs of two id families, enqueued one after the other, all run
    for i in range(3):
        stack.client.enqueue(ECHO, payload(i), job_id=f"invoice-{i}")
    middle = stack.client.get_job("invoice-1")
    assert middle is not None
    for i in range(3):
        stack.client.enqueue(ECHO, payload(i), job_id=f"receipt-{i}")
    deliver(stack, make_worker(stack, Runs()), receive_now(stack))
    # When listing by id prefix, and by enqueue time
    invoices = stack.client.list_jobs(id_prefix="invoice-")
    since = stack.client.list_jobs(id_prefix="invoice-", created_after=middle.created_at)
    before = stack.client.list_jobs(created_before=middle.created_at)
    # Then each has what it asked for, newest first
    assert [j.id for j in invoices] == ["invoice-2", "invoice-1", "invoice-0"]
    assert [j.id for j in since] == ["invoice-2", "invoice-1"]
    assert [j.id for j in before] == ["invoice-0"]
