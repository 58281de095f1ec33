"""Transactional email job types (processed by the email function)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from jobkit.jobs import Backoff, Guarantee, JobType

QUEUE = "email"
# SES throttling clears within seconds to minutes: 5 attempts, 1 s doubling, 5 min cap.
_ATTEMPTS, _BACKOFF, _TIMEOUT = 5, Backoff(base=1.0, cap=300.0), 10.0
# Side effects (README "Side effects"): an invitation, a password reset or a verification link
# is waited for; a second copy is harmless, a lost one is a support ticket: at least once. A
# welcome or a documents reminder nobody waits for, and a second copy looks broken (a reminder
# missed is covered by the next one of its sequence): at most once.
_WAITED_FOR, _UNASKED = Guarantee.AT_LEAST_ONCE, Guarantee.AT_MOST_ONCE


class _Email(BaseModel):
    # Built on first use, not at import (cold start): `EmailStr` loads email-validator then.
    # Validation and its errors are the same; only when the schema is built moves.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

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
    guarantee=_WAITED_FOR,
)
SEND_PASSWORD_RESET = JobType(
    "email.send_password_reset",
    PasswordResetPayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Password-reset link.",
    guarantee=_WAITED_FOR,
)
SEND_VERIFICATION = JobType(
    "email.send_verification",
    VerificationPayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Email-address verification link.",
    guarantee=_WAITED_FOR,
)
SEND_WELCOME = JobType(
    "email.send_welcome",
    WelcomePayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Welcome after sign-up.",
    guarantee=_UNASKED,
)

SEND_DOCUMENTS_REMINDER = JobType(
    "email.send_documents_reminder",
    DocumentsReminderPayload,
    QUEUE,
    _ATTEMPTS,
    _BACKOFF,
    _TIMEOUT,
    description="Reminder of the documents an application still misses (reminder sequences).",
    guarantee=_UNASKED,
)

ALL = (
    SEND_INVITE,
    SEND_PASSWORD_RESET,
    SEND_VERIFICATION,
    SEND_WELCOME,
    SEND_DOCUMENTS_REMINDER,
)
