"""Processors of the syndication queue.

`syndication.publish_listing` resolves the platforms against the partner registry and
enqueues one `syndication.deliver` job per platform (`enqueue_many`; deterministic ids, so a
retried or repeated publish of a version delivers once). `syndication.deliver` is one signed
POST. Before a delivery is claimed, the partner's token bucket admits it or says how long to
wait: the worker hides the message that long without spending an attempt.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobkit.client import EnqueueRequest, Jobkit, default_client
from jobkit.errors import PermanentError, TransientError
from jobkit.worker import JobContext, Worker
from jobkit_apps.syndication import (
    ALL,
    DELIVER,
    PUBLISH_LISTING,
    QUEUE,
    DeliverPayload,
    PublishListingPayload,
    delivery_body,
    delivery_id,
)
from syndication_worker.partners import Registry
from syndication_worker.ratelimit import RateLimiter
from syndication_worker.settings import get_syndication_settings

if TYPE_CHECKING:
    from syndication_worker.delivery import Sender

worker = Worker(queue=QUEUE)


@dataclass
class Runtime:
    """What the processors use, built once per container from the settings."""

    registry: Registry
    limiter: RateLimiter
    sender: Sender


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        # Lazy (cold start): the HTTP adapter loads urllib3, as the first AWS client does.
        from syndication_worker.delivery import Sender

        settings = get_syndication_settings()
        _runtime = Runtime(
            Registry(settings.partners_path, settings.cache_seconds),
            RateLimiter(settings.rate_limit_table),
            Sender(
                settings.ca_bundle or None,
                allow_private_networks=settings.allow_private_networks,
            ),
        )
    return _runtime


def use_runtime(new: Runtime | None) -> Runtime | None:
    """Swap the runtime (tests; None: build from the environment when next needed)."""
    global _runtime
    previous, _runtime = _runtime, new
    return previous


def publish(
    payload: PublishListingPayload, registry: Registry, client: Jobkit | None = None
) -> dict[str, Any]:
    """Enqueue a delivery per platform; unknown or disabled platforms named are reported."""
    partners, invalid = registry.load()
    rejected: dict[str, str] = {}
    if payload.platforms == ALL:
        targets = sorted(name for name, p in partners.items() if p.enabled)
    else:
        targets = []
        for name in payload.platforms:
            partner = partners.get(name)
            if partner is None:
                rejected[name] = invalid.get(name, "unknown platform")
            elif not partner.enabled:
                rejected[name] = "platform disabled"
            else:
                targets.append(name)
    body = delivery_body(payload)
    requests = [
        EnqueueRequest(
            DELIVER,
            DeliverPayload(
                listing_id=payload.listing_id,
                version=payload.version,
                platform=name,
                body=body,
            ),
            job_id=delivery_id(payload.listing_id, payload.version, name),
        )
        for name in targets
    ]
    result = (client or default_client()).enqueue_many(requests) if requests else None
    if result is not None and result.failed:
        first = result.failed[0].error
        raise TransientError(f"{len(result.failed)} deliveries not enqueued: {first}")
    created = {j.id for j in result.created} if result else set()
    return {
        "platforms": targets,
        "enqueued": [
            n for n in targets if delivery_id(payload.listing_id, payload.version, n) in created
        ],
        "already_enqueued": [
            n for n in targets if delivery_id(payload.listing_id, payload.version, n) not in created
        ],
        "rejected": rejected,
    }


def deliver(
    payload: DeliverPayload, job_id: str, rt: Runtime, time_left: float | None = None
) -> dict[str, Any]:
    """One signed POST; the result keeps the partner's id for it and the status.

    `time_left`: seconds of the job's timeout that remain. The POST's own timeout is cut to
    fit them, so the request ends inside the job's lease (or is not sent at all): a second
    attempt never starts while this one's request is still in flight."""
    partner = rt.registry.partner(payload.platform)
    if not partner.enabled:
        raise PermanentError(f"platform {payload.platform!r} is disabled")
    secrets = rt.registry.secrets(partner)
    timeout = (
        partner.timeout_seconds if time_left is None else min(partner.timeout_seconds, time_left)
    )
    if timeout < 1:
        raise TransientError("too little of the job's time left to deliver within its lease")
    body = json.dumps(payload.body, separators=(",", ":"), sort_keys=True).encode()
    delivered = rt.sender.post(
        partner.url,
        body,
        job_id=job_id,
        secrets=secrets,
        timeout=timeout,
        platform=payload.platform,
    )
    return {
        "platform": payload.platform,
        "status": delivered.status,
        "response_id": delivered.response_id,
    }


def admit(payload: DeliverPayload, rt: Runtime) -> float | None:
    """Seconds until the partner's bucket has a token (None: go). An unknown or disabled
    partner is admitted: its run fails it with the reason."""
    partners = rt.registry.partners()
    partner = partners.get(payload.platform)
    if partner is None or not partner.enabled:
        return None
    wait = rt.limiter.acquire(payload.platform, partner.rate_per_second, partner.burst)
    if wait is None:
        return None
    # Spread the waiting deliveries over a bucket's refill time, or a backlog would all come
    # back at the same moment for the one token there is.
    return wait + random.uniform(0, partner.burst / partner.rate_per_second)


@worker.processor(PUBLISH_LISTING)
def run_publish(payload: PublishListingPayload, ctx: JobContext) -> dict[str, Any]:
    return publish(payload, runtime().registry)


@worker.admission(DELIVER)
def admit_delivery(payload: DeliverPayload) -> float | None:
    return admit(payload, runtime())


@worker.processor(DELIVER)
def run_deliver(payload: DeliverPayload, ctx: JobContext) -> dict[str, Any]:
    return deliver(payload, ctx.job_id, runtime(), ctx.remaining_time())
