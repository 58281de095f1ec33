"""Email templates: every job type renders subject, HTML and text from its payload."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from email_worker.render import TemplateRenderError, render
from jobkit_apps.email import (
    DocumentsReminderPayload,
    InvitePayload,
    PasswordResetPayload,
    VerificationPayload,
    WelcomePayload,
)

PAYLOADS: dict[str, tuple[BaseModel, dict[str, str]]] = {
    # template: (payload, {where: text that must appear there})
    "invite": (
        InvitePayload(
            to="ada@example.com",
            name="Ada",
            inviter_name="Grace",
            org_name="Engines Ltd",
            accept_url="https://app.example.com/invites/abc",
        ),
        {"subject": "Grace invited you to join Engines Ltd", "link": "/invites/abc"},
    ),
    "password_reset": (
        PasswordResetPayload(
            to="ada@example.com",
            reset_url="https://app.example.com/reset/t0k",
            expires_in_minutes=30,
        ),
        {"subject": "Reset your password", "link": "/reset/t0k", "body": "30 minutes"},
    ),
    "verification": (
        VerificationPayload(
            to="ada@example.com",
            name="Ada",
            verify_url="https://app.example.com/verify/v3r",
        ),
        {"subject": "Confirm your email address", "link": "/verify/v3r"},
    ),
    "welcome": (
        WelcomePayload(to="ada@example.com", name="Ada", app_name="Jobkit Demo"),
        {"subject": "Welcome to Jobkit Demo", "body": "Jobkit Demo"},
    ),
    "documents_reminder": (
        DocumentsReminderPayload(
            to="ada@example.com",
            name="Ada",
            missing_documents=["passport", "payslip"],
            upload_url="https://apply.example.com/u/42",
        ),
        {
            "subject": "Reminder: 2 documents are still missing",
            "link": "/u/42",
            "body": "payslip",
        },
    ),
}


def fields(payload: BaseModel) -> dict[str, Any]:
    return payload.model_dump(mode="json")


@pytest.mark.parametrize("template", sorted(PAYLOADS))
def test_each_template_renders_subject_html_and_text(template: str) -> None:
    # Given the payload of the job type
    payload, expected = PAYLOADS[template]
    # When its template renders
    email = render(template, fields(payload))
    # Then the subject is the expected single line and both bodies carry the payload's content
    assert email.subject == expected["subject"]
    assert "\n" not in email.subject
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert "<" not in email.text
    for part in ("link", "body"):
        if part in expected:
            assert expected[part] in email.html
            assert expected[part] in email.text


def test_greeting_uses_the_name_or_a_neutral_word() -> None:
    # Given a payload with a name and one without
    named = WelcomePayload(to="ada@example.com", name="Ada")
    anonymous = WelcomePayload(to="ada@example.com")
    # When both render
    # Then the first greets by name, the second without a blank
    assert "Hi Ada," in render("welcome", fields(named)).text
    assert "Hi there," in render("welcome", fields(anonymous)).text


def test_html_escapes_payload_fields_but_text_keeps_them() -> None:
    # Given an inviter name that is markup (user input)
    payload = InvitePayload(
        to="ada@example.com",
        inviter_name="<script>alert(1)</script>",
        org_name="A & B",
        accept_url="https://app.example.com/i?a=1&b=2",
    )
    # When the invitation renders
    email = render("invite", fields(payload))
    # Then the HTML carries it escaped, never as a tag; text and subject are not HTML
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "A &amp; B" in email.html
    assert 'href="https://app.example.com/i?a=1&amp;b=2"' in email.html
    assert "<script>alert(1)</script>" in email.text
    assert email.subject == "<script>alert(1)</script> invited you to join A & B"


def test_a_missing_field_is_an_error_not_a_blank() -> None:
    # Given the fields of an invitation without the inviter's name
    data = fields(PAYLOADS["invite"][0])
    del data["inviter_name"]
    # When it renders, Then it fails naming the field (and permanently: retrying cannot help)
    with pytest.raises(TemplateRenderError, match="inviter_name"):
        render("invite", data)


def test_an_unknown_template_is_an_error() -> None:
    # Given no template of that name, When it renders, Then it fails naming the template
    with pytest.raises(TemplateRenderError, match="reminder"):
        render("reminder", {"name": "Ada"})


def test_a_multiline_subject_becomes_one_line() -> None:
    # Given an organisation name with a line break (a header-injection attempt)
    payload = InvitePayload(
        to="ada@example.com",
        inviter_name="Grace",
        org_name="Evil\r\nBcc: victim@example.com",
        accept_url="https://app.example.com/i",
    )
    # When it renders, Then the subject has no line break left
    subject = render("invite", fields(payload)).subject
    assert "\n" not in subject and "\r" not in subject
    assert subject == "Grace invited you to join Evil Bcc: victim@example.com"


def test_a_documents_reminder_lists_each_document_escaped_and_the_link_only_if_given() -> None:
    # Given a reminder of one document whose name is markup, without an upload link
    payload = DocumentsReminderPayload(
        to="ada@example.com", missing_documents=["<b>proof</b> of address"]
    )
    # When it renders
    email = render("documents_reminder", fields(payload))
    # Then the subject names the one document, the HTML lists it escaped, and no link appears
    assert email.subject == "Reminder: your <b>proof</b> of address is still missing"
    assert "<li>&lt;b&gt;proof&lt;/b&gt; of address</li>" in email.html
    assert "- <b>proof</b> of address" in email.text
    assert "href" not in email.html and "Upload" not in email.text
