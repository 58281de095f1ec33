"""Applicants' documents records and their reminder sequences (the applications table).

    from jobkit_apps.applications import put_application, mark_documents_complete

`models` holds the records and the plan of a sequence, `store` the table's adapter and what
producers call.
"""

from __future__ import annotations

from jobkit_apps.applications.models import (
    Application,
    ApplicationNotFoundError,
    ApplicationsSettings,
    InvalidApplicationError,
    InvalidSequenceError,
    Plan,
    RemindersError,
    Sequence,
    SequenceState,
    get_applications_settings,
)
from jobkit_apps.applications.store import (
    Applications,
    default_applications,
    get_application,
    mark_documents_complete,
    put_application,
)

__all__ = [
    "Application",
    "ApplicationNotFoundError",
    "Applications",
    "ApplicationsSettings",
    "InvalidApplicationError",
    "InvalidSequenceError",
    "Plan",
    "RemindersError",
    "Sequence",
    "SequenceState",
    "default_applications",
    "get_application",
    "get_applications_settings",
    "mark_documents_complete",
    "put_application",
]
