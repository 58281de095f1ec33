"""The nightly batch: a cron job that fans out one child job per account (processed by the
nightly function). The schedule is declared in template.yaml (`NightlySchedule`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jobkit.jobs import Backoff, JobType

QUEUE = "nightly"


class FanOutPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: int = Field(
        ge=0,
        le=1_000_000,
        description="How many accounts to refresh (stands in for a paged query of yours).",
    )
    chunk: int = Field(default=1000, ge=10, le=10_000, description="Children per progress report.")


class RefreshAccountPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str = Field(min_length=1, max_length=100)
    run: str = Field(min_length=1, max_length=200, description="The parent job's id.")


# The parent has 5 minutes (10,000 children take well under one on AWS); if it dies midway,
# its retry enqueues the same child ids again, and those already enqueued are skipped.
FAN_OUT = JobType(
    "nightly.fan_out",
    FanOutPayload,
    QUEUE,
    max_attempts=3,
    backoff=Backoff(base=30.0, cap=600.0),
    timeout=300.0,
    description="Enqueue one nightly.refresh_account job per account, reporting progress.",
)
REFRESH_ACCOUNT = JobType(
    "nightly.refresh_account",
    RefreshAccountPayload,
    QUEUE,
    max_attempts=5,
    backoff=Backoff(base=5.0, cap=300.0),
    timeout=30.0,
    description="Refresh one account's nightly data.",
)

ALL = (FAN_OUT, REFRESH_ACCOUNT)
