"""One processor per email job type: render the template with the payload, send it with SES.

The runtime's claim runs each job id once, and its result (the SES message id) lands in the
job log; the job id also goes to SES as a message tag, so a delivery event traces back to it.
"""

from __future__ import annotations

from pydantic import BaseModel

from email_worker import ses
from email_worker.render import render
from email_worker.settings import get_email_settings
from jobkit.errors import TransientError
from jobkit.observability import logger
from jobkit.redact import mask_email
from jobkit.worker import JobContext, Worker
from jobkit_apps.email import (
    QUEUE,
    SEND_DOCUMENTS_REMINDER,
    SEND_INVITE,
    SEND_PASSWORD_RESET,
    SEND_VERIFICATION,
    SEND_WELCOME,
    DocumentsReminderPayload,
    InvitePayload,
    PasswordResetPayload,
    VerificationPayload,
    WelcomePayload,
)

worker = Worker(queue=QUEUE)

JOB_ID_TAG = "jobkit-job-id"
TEMPLATE_TAG = "jobkit-template"


def send_templated(template: str, to: str, payload: BaseModel, ctx: JobContext) -> dict[str, str]:
    """Render `template` with the payload's fields and send it to `to`; the job's result."""
    settings = get_email_settings()
    email = render(template, payload.model_dump(mode="json"))
    if ctx.remaining_time() < ses.worst_case_seconds():
        # A send must end inside the job's lease, or a second attempt could send it again
        # while this one's request is still in flight.
        raise TransientError("too little of the job's time left to send within its lease")
    message_id = ses.send(
        settings.from_address,
        to,
        email.subject,
        email.html,
        email.text,
        settings.configuration_set,
        {JOB_ID_TAG: ctx.job_id, TEMPLATE_TAG: template},
    )
    logger.info(
        "email sent",
        extra={"to": mask_email(to), "template": template, "ses_message_id": message_id},
    )
    return {"ses_message_id": message_id, "template": template}


@worker.processor(SEND_INVITE)
def send_invite(payload: InvitePayload, ctx: JobContext) -> dict[str, str]:
    return send_templated("invite", str(payload.to), payload, ctx)


@worker.processor(SEND_PASSWORD_RESET)
def send_password_reset(payload: PasswordResetPayload, ctx: JobContext) -> dict[str, str]:
    return send_templated("password_reset", str(payload.to), payload, ctx)


@worker.processor(SEND_VERIFICATION)
def send_verification(payload: VerificationPayload, ctx: JobContext) -> dict[str, str]:
    return send_templated("verification", str(payload.to), payload, ctx)


@worker.processor(SEND_WELCOME)
def send_welcome(payload: WelcomePayload, ctx: JobContext) -> dict[str, str]:
    return send_templated("welcome", str(payload.to), payload, ctx)


@worker.processor(SEND_DOCUMENTS_REMINDER)
def send_documents_reminder(payload: DocumentsReminderPayload, ctx: JobContext) -> dict[str, str]:
    return send_templated("documents_reminder", str(payload.to), payload, ctx)
