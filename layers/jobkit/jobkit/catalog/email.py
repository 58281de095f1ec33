"""Transactional email job types (processed by the email function)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from jobkit.jobs import Backoff, JobType

QUEUE = "email"
# SES throttling clears within seconds to minutes: 5 attempts, 1 s doubling, 5 min cap.
_ATTEMPTS, _BACKOFF, _TIMEOUT = 5, Backoff(base=1.0, cap=300.0), 10.0


class _Email(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    to: EmailStr
    name: str = Field(default="", max_length=200, description="Recipient's display name.")


class InvitePayload(_Email):
    inviter_name: str = Field(min_length=1, max_length=200)
    org_name: str = Field(min_length=1, max_length=200)
    accept_url: HttpUrl


class PasswordResetPayload(_Email):
    reset_url: HttpUrl
    expires_in_minutes: int = Field(default=60, ge=1, le=1440)


class VerificationPayload(_Email):
    verify_url: HttpUrl


class WelcomePayload(_Email):
    app_name: str = Field(default="our app", max_length=200)


class DocumentsReminderPayload(_Email):
    missing_documents: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=50, description="Names of the documents still missing."
    )
    upload_url: HttpUrl | None = Field(default=None, description="Where to upload them.")


SEND_INVITE = JobType(
    "email.send_invite",
    InvitePayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Invitation to join an organisation.",
)
SEND_PASSWORD_RESET = JobType(
    "email.send_password_reset",
    PasswordResetPayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Password-reset link.",
)
SEND_VERIFICATION = JobType(
    "email.send_verification",
    VerificationPayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Email-address verification link.",
)
SEND_WELCOME = JobType(
    "email.send_welcome",
    WelcomePayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Welcome after sign-up.",
)

SEND_DOCUMENTS_REMINDER = JobType(
    "email.send_documents_reminder",
    DocumentsReminderPayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Reminder of the documents an application still misses (reminder sequences).",
)

ALL = (
    SEND_INVITE,
    SEND_PASSWORD_RESET,
    SEND_VERIFICATION,
    SEND_WELCOME,
    SEND_DOCUMENTS_REMINDER,
)
