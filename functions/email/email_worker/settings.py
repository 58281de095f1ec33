"""The email worker's own settings: one validated model, read from the environment once."""

from __future__ import annotations

from email.utils import parseaddr
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmailSettings(BaseSettings):
    """`EMAIL_FROM_ADDRESS` must be an SES-verified identity (the IAM policy pins it too);
    `EMAIL_CONFIGURATION_SET` names the SES configuration set for sending events, empty for none.
    """

    model_config = SettingsConfigDict(env_prefix="EMAIL_", frozen=True, extra="ignore")

    from_address: str = Field(description="Verified sender, `a@b.c` or `Name <a@b.c>`.")
    configuration_set: str = Field(default="", description="SES configuration set, or empty.")

    @field_validator("from_address")
    @classmethod
    def _is_an_address(cls, value: str) -> str:
        value = value.strip()
        if "@" not in parseaddr(value)[1]:
            raise ValueError("EMAIL_FROM_ADDRESS must be an email address")
        return value

    @field_validator("configuration_set")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


@lru_cache(maxsize=1)
def get_email_settings() -> EmailSettings:
    """The process's email settings, read once (tests call `cache_clear()`)."""
    return EmailSettings()  # from_address comes from the environment
