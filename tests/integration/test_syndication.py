"""Syndication end to end on the virtual clock (jobkit_tools.testing): moto for SSM, Secrets
Manager, DynamoDB and SQS, and real HTTPS partners on loopback. A listing fans out to one
delivery per partner; partners answer well, flakily, with a rejection or not at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import trustme

from jobkit.errors import JobValidationError
from jobkit_apps.syndication import (
    PUBLISH_LISTING,
    PlatformStatus,
    PublishListingPayload,
    delivery_id,
    listing_status,
    publish_listing,
)
from jobkit_tools.testing import Harness
from syndication_worker.delivery import Sender
from syndication_worker.partners import Registry, UnknownPartnerError
from syndication_worker.processors import Runtime, publish, use_runtime, worker
from syndication_worker.ratelimit import RateLimiter
from tests.conftest import EVENTS
from tests.integration.syndication_support import (
    PARTNERS_PATH,
    RATE_TABLE,
    PartnerServer,
    Reply,
    closed_port_url,
    create_rate_table,
    put_partner,
    write_ca,
)

SECRET = "whsec_c3luZGljYXRpb24tdGVzdC1zZWNyZXQtMDE="
LISTING = {"title": "2BR near the park", "price": 2450, "url": "https://example.com/l/1"}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def syndication(jobkit_harness: Harness, ca: trustme.CA, tmp_path: Path) -> Iterator[Harness]:
    create_rate_table()
    jobkit_harness.register(worker, function_timeout=60)
    previous = use_runtime(
        Runtime(
            Registry(PARTNERS_PATH, max_age=60),
            RateLimiter(RATE_TABLE),
            Sender(write_ca(ca, tmp_path), allow_private_networks=True),  # partners on loopback
        )
    )
    yield jobkit_harness
    use_runtime(previous)


def by_platform(rows: list[PlatformStatus]) -> dict[str, PlatformStatus]:
    return {r.platform: r for r in rows}


def test_a_listing_reaches_every_enabled_partner_and_one_down_holds_back_none(
    syndication: Harness, ca: trustme.CA
) -> None:
    # Given five partners: healthy, flaky (503 + Retry-After once), rejecting (422), down, and
    # one that is disabled
    with (
        PartnerServer("healthy", ca, [SECRET]) as healthy,
        PartnerServer("flaky", ca, [SECRET], [Reply(503, b"", {"Retry-After": "30"})]) as flaky,
        PartnerServer("rejecting", ca, [SECRET], [Reply(422, {"error": "no price"})]) as bad,
        PartnerServer("disabled", ca, [SECRET]) as disabled,
    ):
        put_partner("healthy", healthy.url, [SECRET])
        put_partner("flaky", flaky.url, [SECRET])
        put_partner("rejecting", bad.url, [SECRET])
        put_partner("down", closed_port_url(), [SECRET])
        put_partner("disabled", disabled.url, [SECRET], enabled=False)

        # When a listing is published to all of them and the stack runs until it is idle
        publish_listing("L-1", 7, LISTING, client=syndication.client)
        syndication.run_until_idle()

        # Then each enabled partner has its own outcome, and the disabled one got nothing
        status = listing_status("L-1", 7, client=syndication.client)
        rows = by_platform(status.platforms)
        assert status.publish_state == "succeeded"
        assert sorted(rows) == ["down", "flaky", "healthy", "rejecting"]
        assert (rows["healthy"].state, rows["healthy"].attempts) == ("succeeded", 1)
        assert rows["healthy"].response_id == "healthy-1"
        assert (rows["flaky"].state, rows["flaky"].attempts) == ("succeeded", 2)
        assert rows["flaky"].response_id == "flaky-2"
        assert (rows["rejecting"].state, rows["rejecting"].attempts) == ("failed", 1)
        assert rows["rejecting"].error == "rejecting answered 422: no price"
        assert rows["down"].state == "failed" and rows["down"].attempts == 8
        assert "attempts exhausted (8)" in (rows["down"].error or "")
        assert disabled.requests == []
        # And every request was signed (verified at the partner) with the job id as webhook id
        # and idempotency key, the same on the retry
        job_id = delivery_id("L-1", "7", "flaky")
        assert [r.headers["Idempotency-Key"] for r in flaky.requests] == [job_id, job_id]
        assert all(r.verified for p in (healthy, flaky, bad) for r in p.requests)
        assert json.loads(healthy.requests[0].body)["listing"]["title"] == LISTING["title"]
        # And the two failures are in the DLQ with their reasons
        assert sorted(d.job_id or "" for d in syndication.dead_letters("syndication")) == [
            delivery_id("L-1", "7", "down"),
            delivery_id("L-1", "7", "rejecting"),
        ]


def test_platforms_named_but_unknown_or_disabled_are_reported(
    syndication: Harness, ca: trustme.CA
) -> None:
    # Given one healthy partner, one disabled and one whose parameter is broken
    with PartnerServer("healthy", ca, [SECRET]) as healthy:
        put_partner("healthy", healthy.url, [SECRET])
        put_partner("paused", healthy.url, [SECRET], enabled=False)
        boto3.client("ssm").put_parameter(
            Name=f"{PARTNERS_PATH}/broken", Value="{not json", Type="String"
        )

        # When a listing is published to those and to a platform nobody registered
        publish_listing(
            "L-2", "a1", LISTING, ["healthy", "paused", "broken", "nope"], syndication.client
        )
        syndication.run_until_idle()

        # Then the healthy one is delivered and each other one is in the status, with why
        rows = by_platform(listing_status("L-2", "a1", client=syndication.client).platforms)
        assert rows["healthy"].state == "succeeded"
        assert (rows["paused"].state, rows["paused"].error) == ("rejected", "platform disabled")
        assert (rows["nope"].state, rows["nope"].error) == ("rejected", "unknown platform")
        assert rows["broken"].state == "rejected"
        assert "invalid partner configuration" in (rows["broken"].error or "")
        assert len(healthy.requests) == 1


def test_the_same_version_delivers_once_and_a_new_version_again(
    syndication: Harness, ca: trustme.CA
) -> None:
    # Given a partner and a listing version already delivered
    with PartnerServer("healthy", ca, [SECRET]) as healthy:
        put_partner("healthy", healthy.url, [SECRET])
        publish_listing("L-3", 1, LISTING, client=syndication.client)
        syndication.run_until_idle()
        assert len(healthy.requests) == 1

        # When it is published again, and its fan-out runs again (a retried publish job)
        again = publish_listing("L-3", 1, LISTING, client=syndication.client)
        payload = PublishListingPayload.model_validate(again.payload)
        rerun = publish(payload, Registry(PARTNERS_PATH, max_age=0), syndication.client)
        syndication.run_until_idle()

        # Then nothing is delivered twice
        assert rerun["already_enqueued"] == ["healthy"] and rerun["enqueued"] == []
        assert len(healthy.requests) == 1

        # When a changed listing is published as version 2
        publish_listing("L-3", 2, {**LISTING, "price": 2300}, client=syndication.client)
        syndication.run_until_idle()

        # Then it is delivered again, under its own webhook id
        assert len(healthy.requests) == 2
        assert healthy.requests[1].headers["webhook-id"] == delivery_id("L-3", "2", "healthy")
        assert json.loads(healthy.requests[1].body)["listing"]["price"] == 2300


def test_a_delivery_over_the_rate_limit_waits_without_spending_an_attempt(
    syndication: Harness, ca: trustme.CA
) -> None:
    # Given a partner that takes one delivery per 10 s (burst 1)
    with PartnerServer("slowpoke", ca, [SECRET]) as partner:
        put_partner("slowpoke", partner.url, [SECRET], rate_per_second=0.1, burst=1)

        # When two versions of a listing are published at once
        publish_listing("L-4", 1, LISTING, client=syndication.client)
        publish_listing("L-4", 2, LISTING, client=syndication.client)
        syndication.advance(2)

        # Then one is delivered and the other waits, its attempts untouched
        jobs = [syndication.job(delivery_id("L-4", v, "slowpoke")) for v in ("1", "2")]
        assert sorted(j.state.value for j in jobs) == ["queued", "succeeded"]
        waiting = next(j for j in jobs if j.state.value == "queued")
        assert waiting.attempts == 0
        assert len(partner.requests) == 1

        # When the bucket has refilled (10 s) and the deferral's spread over one refill time
        # (up to 10 s more) has passed
        syndication.advance(25)

        # Then the second one is delivered on its first attempt
        done = syndication.job(waiting.id)
        assert (done.state.value, done.attempts) == ("succeeded", 1)
        assert len(partner.requests) == 2


def test_registry_changes_are_picked_up_after_the_cache_age(syndication: Harness) -> None:
    # Given a registry cached for 60 s that has read one partner
    put_partner("first", "https://first.example/hook", [SECRET])
    registry = Registry(PARTNERS_PATH, max_age=60)
    assert registry.enabled() == ["first"]

    # When an operator adds a partner and disables the first (parameters only, no deploy)
    put_partner("second", "https://second.example/hook", [SECRET])
    put_partner("first", "https://first.example/hook", [SECRET], enabled=False)

    # Then the cached view holds until the cache age has passed, then shows the change
    assert registry.enabled() == ["first"]
    syndication.advance(61)
    assert registry.enabled() == ["second"]
    assert registry.secrets(registry.partner("second")) == [SECRET]
    with pytest.raises(UnknownPartnerError):
        registry.partner("third")


def test_the_token_bucket_allows_the_burst_then_paces(syndication: Harness) -> None:
    # Given a bucket of 3 that refills 2 a second, on a clock the test moves
    now = [1_000.0]
    limiter = RateLimiter(RATE_TABLE, clock=lambda: now[0])

    # When 4 deliveries ask at once
    answers = [limiter.acquire("acme", rate=2, burst=3) for _ in range(4)]

    # Then 3 go and the 4th waits half a second; after that it goes
    assert answers[:3] == [None, None, None]
    assert answers[3] == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.acquire("acme", rate=2, burst=3) is None
    # And another partner's bucket is its own
    assert limiter.acquire("other", rate=2, burst=3) is None


def test_a_bucket_costs_one_write_per_token_and_containers_share_it(
    syndication: Harness,
) -> None:
    from jobkit import aws

    # Given two containers' limiters on one partner's bucket of 3, refilling 1 a second
    now = [5_000.0]
    first = RateLimiter(RATE_TABLE, clock=lambda: now[0])
    second = RateLimiter(RATE_TABLE, clock=lambda: now[0])
    calls: list[str] = []
    aws.dynamodb().meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )

    # When the first takes two tokens, then the second one (it has not seen the bucket)
    assert first.acquire("acme", rate=1, burst=3) is None
    assert first.acquire("acme", rate=1, burst=3) is None
    took_first = list(calls)
    assert second.acquire("acme", rate=1, burst=3) is None

    # Then the first paid one conditional write a token; the second one more, to learn the
    # bucket from its failed condition; and both now see it empty
    assert took_first == ["UpdateItem", "UpdateItem"]
    assert calls[2:] == ["UpdateItem", "UpdateItem"]
    assert first.acquire("acme", rate=1, burst=3) == pytest.approx(1.0)
    assert second.acquire("acme", rate=1, burst=3) == pytest.approx(1.0)
    now[0] += 1
    assert first.acquire("acme", rate=1, burst=3) is None
    assert second.acquire("acme", rate=1, burst=3) is not None  # the first took the refill


def test_status_of_a_listing_never_published(syndication: Harness) -> None:
    status = listing_status("L-none", 1, client=syndication.client)
    assert status.publish_state is None and status.platforms == []


def test_a_bad_listing_is_refused_at_publish() -> None:
    with pytest.raises(ValueError, match="url"):
        PublishListingPayload.model_validate(
            {"listing_id": "L-5", "version": 1, "listing": {**LISTING, "url": "http://x"}}
        )
    with pytest.raises(JobValidationError, match="listing_id"):
        PUBLISH_LISTING.validate({"listing_id": "a:b", "version": 1, "listing": LISTING})


def test_the_sample_event_runs_through_the_worker(syndication: Harness, ca: trustme.CA) -> None:
    # Given the sample publish event (events/syndication_publish.json, for sam local invoke)
    # and one partner
    event = json.loads((EVENTS / "syndication_publish.json").read_text())
    with PartnerServer("healthy", ca, [SECRET]) as healthy:
        put_partner("healthy", healthy.url, [SECRET])

        # When the syndication worker handles it, and then the delivery it enqueued
        response = worker.handle(event, None)
        syndication.run_until_idle()

        # Then the publish was adopted into the log and the listing reached the partner
        assert response == {"batchItemFailures": []}
        rows = by_platform(listing_status("L-100", 3, client=syndication.client).platforms)
        assert rows["healthy"].state == "succeeded"
        assert json.loads(healthy.requests[0].body)["listing_id"] == "L-100"


def test_a_delivery_with_too_little_of_its_time_left_is_not_sent(
    syndication: Harness, ca: trustme.CA
) -> None:
    from jobkit.errors import TransientError
    from jobkit_apps.syndication import DeliverPayload, delivery_body
    from syndication_worker.processors import deliver, runtime

    # Given a healthy partner (10 s timeout) and a delivery whose job has half a second left
    with PartnerServer("healthy", ca, [SECRET]) as healthy:
        put_partner("healthy", healthy.url, [SECRET])
        listing = PublishListingPayload(listing_id="L-late", version="1", listing=LISTING)
        payload = DeliverPayload(
            listing_id="L-late", version="1", platform="healthy", body=delivery_body(listing)
        )
        # When it runs, Then it is retried later without a request (which could outlive the
        # job's lease), and with time enough it is sent, its timeout cut to what is left
        with pytest.raises(TransientError, match="too little of the job's time left"):
            deliver(payload, "job-late", runtime(), time_left=0.5)
        assert healthy.requests == []
        assert deliver(payload, "job-late", runtime(), time_left=5)["status"] == 200
        assert len(healthy.requests) == 1
