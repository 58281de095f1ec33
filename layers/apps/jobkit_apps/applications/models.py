"""Applicant records and reminder plans: what the applications table holds (`store` reads and
writes it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobkit.errors import ConfigurationError, JobkitError
from jobkit.expressions import zone

DAY = 86_400
MAX_STEPS = 50
MAX_DOCUMENTS = 50
# Ids end up in job ids, schedule names and logs: letters, digits and ._:- only (so no email
# address can be used as an applicant id by mistake).
APPLICANT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class RemindersError(JobkitError):
    """Base of the errors of reminder sequences and the applications table."""


class ApplicationNotFoundError(RemindersError):
    """No application with that applicant id."""


class InvalidApplicationError(RemindersError):
    """An application's fields are invalid. Names each bad field, never its value."""


class InvalidSequenceError(RemindersError):
    """A sequence's plan cannot be honoured (unknown timezone, bad offsets or send time)."""


class SequenceState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Plan(BaseModel):
    """When each step of a sequence is due, fixed when it starts.

    `offsets` are seconds after `start`. With a `send_time`, they are whole days and step n is
    due on (the start's date in `timezone` + offset days) at `send_time` wall-clock time there,
    so a reminder comes at 9:00 local time on either side of a DST change. Without one, step n
    is due exactly `start + offset`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: AwareDatetime
    timezone: str = "UTC"
    send_time: time | None = time(9, 0)
    offsets: tuple[int, ...] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # zone's InvalidScheduleError is a ValueError: pydantic reports it as this field's.
        zone(value)
        return value

    @field_validator("send_time")
    @classmethod
    def _wall_clock(cls, value: time | None) -> time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("send_time is a wall-clock time in the timezone: give it no tzinfo")
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _offsets(self) -> Plan:
        if any(o < 0 for o in self.offsets):
            raise ValueError("offsets must not be negative")
        if any(b <= a for a, b in zip(self.offsets, self.offsets[1:], strict=False)):
            raise ValueError("offsets must be in increasing order, without repeats")
        if self.send_time is not None and any(o % DAY for o in self.offsets):
            raise ValueError(
                "with a send_time, offsets must be whole days (pass send_time=None for exact "
                "offsets)"
            )
        return self

    @property
    def steps(self) -> int:
        return len(self.offsets)

    def due(self, step: int) -> datetime:
        """When step `step` (1-based) is due, in UTC."""
        offset = self.offsets[step - 1]
        if self.send_time is None:
            return self.start + timedelta(seconds=offset)
        tz = zone(self.timezone)
        day = self.start.astimezone(tz).date() + timedelta(days=offset // DAY)
        # zoneinfo gives the wall-clock time that day its own UTC offset (DST-correct); a time
        # that a spring-forward skips comes out an hour later, as a wall clock would show it.
        return datetime.combine(day, self.send_time, tzinfo=tz).astimezone(UTC)

    def due_times(self) -> list[datetime]:
        return [self.due(step) for step in range(1, self.steps + 1)]


class Sequence(BaseModel):
    """A reminder sequence as the applicant's record holds it."""

    model_config = ConfigDict(frozen=True)

    applicant_id: str
    id: str
    state: SequenceState
    step: int = Field(ge=1, description="Active: the pending step. Ended: the last one run.")
    plan: Plan
    job_id: str | None = Field(default=None, description="Job id of the pending step.")
    next_due: datetime | None = None
    advanced_by: str | None = Field(default=None, description="Step job that scheduled it.")
    reason: str | None = None
    started_at: datetime
    updated_at: datetime

    @property
    def steps(self) -> int:
        return self.plan.steps


class Application(BaseModel):
    """An applicant's documents record, with the state of their reminder sequence."""

    # Built on first use, not at import (cold start): `EmailStr` loads email-validator then.
    model_config = ConfigDict(frozen=True, defer_build=True)

    applicant_id: str = Field(pattern=APPLICANT_ID)
    email: EmailStr = Field(repr=False)
    name: str = Field(default="", max_length=200, repr=False)
    timezone: str = "UTC"
    missing_documents: list[str] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    documents_complete: bool = False
    upload_url: HttpUrl | None = None
    sequence: Sequence | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("missing_documents")
    @classmethod
    def _document_names(cls, value: list[str]) -> list[str]:
        names = [" ".join(v.split()) for v in value]
        if any(not n or len(n) > 200 for n in names):
            raise ValueError("document names are 1 to 200 characters")
        return list(dict.fromkeys(names))  # in order, without repeats


class ApplicationsSettings(BaseSettings):
    """`JOBKIT_APPLICATIONS_TABLE` names the applications table (stack output
    `ApplicationsTableName`)."""

    model_config = SettingsConfigDict(env_prefix="JOBKIT_", frozen=True, extra="ignore")

    applications_table: str = Field(default="", description="Applications table name.")

    def require_table(self) -> str:
        if not self.applications_table:
            raise ConfigurationError("no applications table: set JOBKIT_APPLICATIONS_TABLE")
        return self.applications_table


@lru_cache(maxsize=1)
def get_applications_settings() -> ApplicationsSettings:
    """The process's settings, read once (tests call `cache_clear()`)."""
    return ApplicationsSettings()


def check_applicant_id(applicant_id: str) -> str:
    if not isinstance(applicant_id, str) or not re.fullmatch(APPLICANT_ID, applicant_id):
        raise InvalidApplicationError(
            "applicant_id must be 1 to 128 letters, digits and . _ : - (an id, not an address)"
        )
    return applicant_id
