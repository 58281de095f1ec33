"""The syndication worker's own settings: one validated model, read from the environment once."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SyndicationSettings(BaseSettings):
    """`SYNDICATION_PARTNERS_PATH` is the SSM path holding one JSON parameter per partner;
    `SYNDICATION_RATE_LIMIT_TABLE` the DynamoDB table of the partners' token buckets;
    `SYNDICATION_CA_BUNDLE` an optional PEM file of CAs trusted besides the system's (a
    private CA); `SYNDICATION_ALLOW_PRIVATE_NETWORKS` lets partners be on loopback, private or
    link-local addresses (for local testing only; the local stack sets it)."""

    model_config = SettingsConfigDict(env_prefix="SYNDICATION_", frozen=True, extra="ignore")

    partners_path: str = Field(description="SSM path prefix, e.g. /jobkit/dev/partners/.")
    rate_limit_table: str = Field(min_length=1, description="Token buckets, key `bucket`.")
    ca_bundle: str = Field(
        default="", description="PEM CA bundle trusted besides the system's CAs, or empty."
    )
    allow_private_networks: bool = Field(
        default=False,
        description="Allow partners on loopback, private or link-local addresses (local only).",
    )
    cache_seconds: int = Field(
        default=60, ge=0, le=3600, description="How long partner configs and secrets are cached."
    )

    @field_validator("partners_path")
    @classmethod
    def _a_path(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/"):
            raise ValueError(
                "SYNDICATION_PARTNERS_PATH must be an SSM path such as /jobkit/dev/partners"
            )
        return value.rstrip("/")


@lru_cache(maxsize=1)
def get_syndication_settings() -> SyndicationSettings:
    """The process's syndication settings, read once (tests call `cache_clear()`)."""
    return SyndicationSettings()  # from the environment
