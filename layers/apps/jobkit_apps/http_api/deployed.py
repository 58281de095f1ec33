"""The resolver the deployed API function serves: the job types of the built-in apps and of
JOBKIT_TYPES, and the client the function's settings (JOBKIT_*) describe, built on the first
request (cold start stays light)."""

from __future__ import annotations

from jobkit.client import default_client
from jobkit.settings import get_settings
from jobkit_apps.http_api.resolver import build_app, load_job_types

load_job_types(get_settings().types)
api = build_app(default_client)
