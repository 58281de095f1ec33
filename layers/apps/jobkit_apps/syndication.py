"""Syndication: push a listing to partner platforms (run by the syndication function).

`syndication.publish_listing` fans out one `syndication.deliver` job per (listing, version,
platform); a delivery is one signed HTTPS POST to that partner. Job ids are deterministic, so
publishing the same version twice delivers once and a new version delivers again:

    publish:  syndication:<listing_id>:<version>
    deliver:  syndication:<listing_id>:<version>:<platform>

Producers import this module (no worker code here): `publish_listing(...)` to publish and
`listing_status(...)` to read, per platform, what became of it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobkit import aws
from jobkit.client import Jobkit, default_client
from jobkit.jobs import Backoff, JobType
from jobkit.models import Job

QUEUE = "syndication"
ALL: Literal["all"] = "all"
# Listing ids, versions and platforms become parts of job ids: no ":" (the separator).
_PART = r"^[A-Za-z0-9._-]+$"


class Listing(BaseModel):
    """What partners get of a listing: small on purpose (payloads stay references)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=300)
    price: float = Field(ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    url: str = Field(pattern=r"^https://", max_length=2000)
    description: str = Field(default="", max_length=5000)


class PublishListingPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listing_id: str = Field(min_length=1, max_length=100, pattern=_PART)
    version: str = Field(
        min_length=1,
        max_length=50,
        pattern=_PART,
        description="The listing's version: a republish of a changed listing delivers again.",
    )
    platforms: list[str] | Literal["all"] = Field(
        default=ALL, description='Partner names, or "all" for every enabled partner.'
    )
    listing: Listing

    @field_validator("version", mode="before")
    @classmethod
    def _int_is_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("platforms")
    @classmethod
    def _named(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            if not value:
                raise ValueError('name at least one platform, or "all"')
            for name in value:
                if not name or ":" in name or len(name) > 100:
                    raise ValueError(f"not a platform name: {name[:100]!r}")
            return list(dict.fromkeys(value))
        return value


class DeliverPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listing_id: str = Field(min_length=1, max_length=100, pattern=_PART)
    version: str = Field(min_length=1, max_length=50, pattern=_PART)
    platform: str = Field(min_length=1, max_length=100, pattern=_PART)
    body: dict[str, Any] = Field(description="The JSON body POSTed to the partner.")


PUBLISH_LISTING = JobType(
    "syndication.publish_listing",
    PublishListingPayload,
    QUEUE,
    max_attempts=5,
    backoff=Backoff(base=5.0, cap=300.0),
    timeout=30.0,
    description="Enqueue one syndication.deliver job per platform of a listing version.",
)
# A partner that is down gets about a day of retries (backoff up to 1 h, Retry-After honoured).
DELIVER = JobType(
    "syndication.deliver",
    DeliverPayload,
    QUEUE,
    max_attempts=8,
    backoff=Backoff(base=10.0, cap=3600.0),
    # The longest partner timeout (30 s) plus signing, the rate limit and the log writes.
    timeout=45.0,
    description="POST one listing version to one partner, signed (Standard Webhooks).",
)

TYPES = (PUBLISH_LISTING, DELIVER)


def publish_id(listing_id: str, version: str | int) -> str:
    return f"syndication:{listing_id}:{version}"


def delivery_id(listing_id: str, version: str | int, platform: str) -> str:
    return f"syndication:{listing_id}:{version}:{platform}"


def delivery_body(payload: PublishListingPayload) -> dict[str, Any]:
    """The JSON a partner receives for a listing version (the same for every partner)."""
    return {
        "type": "listing.published",
        "listing_id": payload.listing_id,
        "version": payload.version,
        "listing": payload.listing.model_dump(mode="json"),
    }


@aws.service_errors
def publish_listing(
    listing_id: str,
    version: str | int,
    listing: Listing | dict[str, Any],
    platforms: list[str] | Literal["all"] = ALL,
    client: Jobkit | None = None,
) -> Job:
    """Enqueue the publish job of a listing version (the same version twice: the first job)."""
    payload = PublishListingPayload.model_validate(
        {
            "listing_id": listing_id,
            "version": version,
            "platforms": platforms,
            "listing": listing.model_dump() if isinstance(listing, Listing) else listing,
        }
    )
    return (client or default_client()).enqueue(
        PUBLISH_LISTING, payload, job_id=publish_id(payload.listing_id, payload.version)
    )


class PlatformStatus(BaseModel):
    """One platform's delivery of a listing version."""

    platform: str
    # A job state, "rejected" (unknown or disabled when published) or "pending" (not enqueued
    # yet: the publish job has not run).
    state: str
    attempts: int = 0
    error: str | None = None
    response_id: str | None = None  # the partner's id for the delivery
    job_id: str | None = None


class ListingStatus(BaseModel):
    listing_id: str
    version: str
    publish_state: str | None  # None: never published
    publish_error: str | None = None
    platforms: list[PlatformStatus] = Field(default_factory=list)


def _response_id(job: Job) -> str | None:
    result = job.result
    if isinstance(result, dict) and result.get("response_id") is not None:
        return str(result["response_id"])
    return None


@aws.service_errors
def listing_status(
    listing_id: str,
    version: str | int,
    platforms: list[str] | None = None,
    client: Jobkit | None = None,
) -> ListingStatus:
    """Per platform: state, attempts, error and the partner's response id.

    Platforms come from the publish job (what it fanned out to, or named) unless given. Two
    reads: the publish job, then every delivery in one `BatchGetItem`.
    """
    client = client or default_client()
    version = str(version)
    parent = client.log.get(publish_id(listing_id, version))
    rejected: dict[str, str] = {}
    if platforms is None:
        platforms = []
        if parent is not None and isinstance(parent.result, dict):
            platforms = list(parent.result.get("platforms", []))
            rejected = dict(parent.result.get("rejected", {}))
        elif parent is not None and isinstance(parent.payload.get("platforms"), list):
            platforms = list(parent.payload["platforms"])
    ids = {p: delivery_id(listing_id, version, p) for p in platforms}
    jobs = client.log.get_many(ids.values()) if ids else {}
    rows: list[PlatformStatus] = []
    for platform, job_id in ids.items():
        job = jobs.get(job_id)
        if job is None:
            rows.append(PlatformStatus(platform=platform, state="pending"))
            continue
        rows.append(
            PlatformStatus(
                platform=platform,
                state=job.state.value,
                attempts=job.attempts,
                error=job.error,
                response_id=_response_id(job),
                job_id=job.id,
            )
        )
    for platform, why in rejected.items():
        rows.append(PlatformStatus(platform=platform, state="rejected", error=why))
    return ListingStatus(
        listing_id=listing_id,
        version=version,
        publish_state=parent.state.value if parent else None,
        publish_error=parent.error if parent else None,
        platforms=sorted(rows, key=lambda r: r.platform),
    )
