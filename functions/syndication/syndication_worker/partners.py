"""The partner registry: configuration, not code (an adapter: SSM and Secrets Manager).

One SSM parameter per partner under the partners path, named after the platform
(`/jobkit/dev/partners/zillow`), holding JSON that `PartnerConfig` validates; its signing
secrets live in Secrets Manager as `{"secrets": ["whsec_new", "whsec_old"]}`. Both are read
through Powertools Parameters and cached for `max_age` seconds, so adding, changing or
disabling a partner takes effect within that time, with no deploy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobkit import aws
from jobkit.errors import PermanentError
from jobkit.jobs import describe_validation_error

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider


class PartnerConfig(BaseModel):
    """One partner platform, as its SSM parameter declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https://[^\s]+$", max_length=2000, description="HTTPS endpoint.")
    secret_arn: str = Field(min_length=1, description="Secrets Manager ARN or name.")
    rate_per_second: float = Field(default=5.0, gt=0, le=10_000)
    burst: int = Field(default=10, ge=1, le=100_000)
    timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    enabled: bool = True


class PartnerSecrets(BaseModel):
    """The secret's value: the first signs as the current one; all listed sign (rotation)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    secrets: list[str] = Field(min_length=1, max_length=5)

    @field_validator("secrets")
    @classmethod
    def _whsec(cls, value: list[str]) -> list[str]:
        if not all(s.startswith("whsec_") and len(s) > 6 for s in value):
            raise ValueError('each secret is a "whsec_..." string')
        return value


class UnknownPartnerError(PermanentError):
    """No (valid) partner parameter of that name under the partners path."""


class Registry:
    """The partners under one SSM path, cached `max_age` seconds."""

    def __init__(self, path: str, max_age: int = 60) -> None:
        self.path = path.rstrip("/")
        self.max_age = max_age
        self._ssm: SSMProvider | None = None
        self._secrets: SecretsProvider | None = None

    def _providers(self) -> tuple[SSMProvider, SecretsProvider]:
        if self._ssm is None or self._secrets is None:
            # Lazy (cold start): Powertools Parameters loads boto3 and botocore at import.
            from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

            self._ssm = SSMProvider(boto3_client=aws.client("ssm"))
            self._secrets = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        return self._ssm, self._secrets

    def load(self) -> tuple[dict[str, PartnerConfig], dict[str, str]]:
        """Every partner by platform name, and the parameters that are not valid (with why)."""
        ssm, _ = self._providers()
        raw: dict[str, Any] = ssm.get_multiple(self.path + "/", max_age=self.max_age)
        partners: dict[str, PartnerConfig] = {}
        invalid: dict[str, str] = {}
        for name, text in raw.items():
            try:
                partners[name] = PartnerConfig.model_validate(json.loads(text))
            except ValueError as exc:
                detail = (
                    "; ".join(describe_validation_error(exc))
                    if isinstance(exc, ValidationError)
                    else "not JSON"
                )
                invalid[name] = f"invalid partner configuration: {detail}"
        return partners, invalid

    def partners(self) -> dict[str, PartnerConfig]:
        return self.load()[0]

    def enabled(self) -> list[str]:
        return sorted(name for name, p in self.partners().items() if p.enabled)

    def partner(self, platform: str) -> PartnerConfig:
        partners, invalid = self.load()
        if platform in invalid:
            raise UnknownPartnerError(f"partner {platform!r}: {invalid[platform]}")
        found = partners.get(platform)
        if found is None:
            raise UnknownPartnerError(f"no partner {platform!r} under {self.path}")
        return found

    def secrets(self, partner: PartnerConfig) -> list[str]:
        """The partner's signing secrets (cached like the configuration)."""
        _, provider = self._providers()
        value: Any = provider.get(partner.secret_arn, max_age=self.max_age, transform="json")
        try:
            return PartnerSecrets.model_validate(value).secrets
        except ValidationError as exc:
            raise PermanentError(
                'partner secret is not {"secrets": ["whsec_..."]}: '
                + "; ".join(describe_validation_error(exc))
            ) from None
