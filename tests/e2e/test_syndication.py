"""Syndication on the local stack: the syndication function of template.yaml delivers a
listing to the stack's partner endpoints (HTTPS on 127.0.0.1, verifying every signature):
healthy, flaky (503 + Retry-After, then 200), reject (422) and slow (past its timeout)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from jobkit.client import Jobkit
from jobkit_apps.syndication import ListingStatus, listing_status, publish_listing
from jobkit_tools.local import LocalStack

from .conftest import wait_until

pytestmark = pytest.mark.e2e

LISTING = {
    "title": "2BR with a view of the park",
    "price": 2450,
    "url": "https://listings.example.com/L-1",
}


def test_a_listing_reaches_each_partner_as_that_partner_answers(
    jobkit_stack: LocalStack, producer: Jobkit
) -> None:
    import jobkit_apps.syndication  # noqa: F401  (declares the job types)

    partners = jobkit_stack.partners
    assert partners is not None
    # Given a listing published to every enabled partner
    listing_id = f"L-{uuid.uuid4().hex[:8]}"
    publish_listing(listing_id, 1, LISTING, client=producer)

    # When the stack has delivered it (the slow partner keeps timing out: it stays retrying)
    def settled() -> ListingStatus | None:
        status = listing_status(listing_id, 1, client=producer)
        states = {p.platform: p for p in status.platforms}
        done = (
            states.get("healthy") is not None
            and states["healthy"].state == "succeeded"
            and states.get("flaky") is not None
            and states["flaky"].state == "succeeded"
            and states.get("reject") is not None
            and states["reject"].state == "failed"
            and states.get("slow") is not None
            and states["slow"].attempts >= 1
            and states["slow"].state == "retrying"
        )
        return status if done else None

    status: ListingStatus = wait_until(settled, timeout=60, what="every partner's outcome")
    by_platform: dict[str, Any] = {p.platform: p for p in status.platforms}

    # Then the healthy partner took it at once and gave its id
    assert by_platform["healthy"].attempts == 1
    assert by_platform["healthy"].response_id and by_platform["healthy"].response_id.startswith(
        "healthy-"
    )
    # And the flaky one after its Retry-After, on the second attempt, with the same webhook id
    assert by_platform["flaky"].attempts == 2
    flaky_ids = {r.headers["webhook-id"] for r in partners.received("flaky")}
    assert by_platform["flaky"].job_id in flaky_ids
    # And the rejecting one failed at once with the partner's reason
    assert by_platform["reject"].attempts == 1
    assert "missing square footage" in (by_platform["reject"].error or "")
    # And the slow one is retrying after a timeout, the others not held back by it
    assert "timed out" in (by_platform["slow"].error or "").lower() or "no answer" in (
        by_platform["slow"].error or ""
    )
    # And every request every partner got was signed correctly
    for name in partners.names:
        received = [r for r in partners.received(name) if listing_id in r.body.decode()]
        assert received and all(r.verified for r in received), name
