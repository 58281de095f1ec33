"""The demo's syndication part: three listings published to every partner of the local stack.

The stack's partner endpoints answer as their names say: `healthy` takes each listing at once,
`flaky` answers 503 with `Retry-After` and then 200 (the second attempt succeeds), `reject`
answers 422 (the delivery fails at once, into the DLQ, with the partner's reason) and `slow`
answers after the partner's timeout (the delivery keeps retrying, and holds nobody back).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit.client import Jobkit
    from jobkit_apps.syndication import PlatformStatus

LISTINGS = 3
# platform -> (state it must reach, attempts it must have taken; None: any). The slow
# partner's deliveries keep trying: between attempts they are retrying, during one running.
EXPECTED: dict[str, tuple[str, int | None]] = {
    "healthy": ("succeeded", 1),
    "flaky": ("succeeded", 2),
    "reject": ("failed", 1),
    "slow": ("retrying|running", None),
}


@dataclass
class SyndicationWorkload:
    run: str
    listings: list[str] = field(default_factory=list)


def start(producer: Jobkit, run: str) -> SyndicationWorkload:
    from jobkit_apps.syndication import publish_listing

    work = SyndicationWorkload(run)
    for n in range(1, LISTINGS + 1):
        listing_id = f"demo-{run}-L{n}"
        listing = {
            "title": f"{n + 1}BR near the park",
            "price": 1800 + 250 * n,
            "url": f"https://listings.example.com/{listing_id}",
        }
        publish_listing(listing_id, 1, listing, client=producer)
        work.listings.append(listing_id)
    return work


def _statuses(producer: Jobkit, work: SyndicationWorkload) -> list[PlatformStatus]:
    from jobkit_apps.syndication import listing_status

    return [
        platform
        for listing_id in work.listings
        for platform in listing_status(listing_id, 1, client=producer).platforms
    ]


def _reached(status: PlatformStatus) -> bool:
    state, attempts = EXPECTED.get(status.platform, ("succeeded", None))
    return status.state in state.split("|") and (attempts is None or status.attempts >= attempts)


def done(producer: Jobkit, work: SyndicationWorkload) -> bool:
    statuses = _statuses(producer, work)
    return len(statuses) == LISTINGS * len(EXPECTED) and all(_reached(s) for s in statuses)


def checks(producer: Jobkit, work: SyndicationWorkload) -> list[tuple[str, Any, Any]]:
    """(what, expected, actual): per partner, how its deliveries ended."""
    statuses = _statuses(producer, work)
    outcomes: dict[str, Counter[str]] = {name: Counter() for name in EXPECTED}
    for s in statuses:
        outcomes.setdefault(s.platform, Counter())[f"{s.state}/{s.attempts}"] += 1
    rows: list[tuple[str, Any, Any]] = []
    for name, (state, attempts) in EXPECTED.items():
        want = f"{state}/{attempts}" if attempts is not None else f"{state}/any"
        got = outcomes[name]
        matched = sum(n for key, n in got.items() if _matches(key, state, attempts))
        label = f"syndication to {name}: {want} (state/attempts)"
        rows.append((label, LISTINGS, matched))
    reasons = [s.error or "" for s in statuses if s.platform == "reject"]
    rows.append(
        (
            "  ... the rejection carries the partner's reason",
            LISTINGS,
            sum(1 for r in reasons if "missing square footage" in r),
        )
    )
    return rows


def _matches(key: str, state: str, attempts: int | None) -> bool:
    got_state, _, got_attempts = key.partition("/")
    return got_state in state.split("|") and (attempts is None or int(got_attempts) == attempts)
