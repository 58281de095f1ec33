"""The harness's AWS environment: fake credentials and its region, none of the machine's
profiles, endpoints or config files, and everything put back when it stops."""

from __future__ import annotations

import os
from typing import Any

from jobkit import aws

# The AWS settings of a test machine that must not reach the harness's clients.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)

_own_sessions: dict[str, Any] = {}


def new_session(region: str, **credentials: str) -> Any:
    return aws.new_session(region_name=region, **credentials)


def own_session(region: str) -> Any:
    """The harness's own session (its receives, deletes and peeks), kept across harnesses."""
    session = _own_sessions.get(region)
    if session is None:
        session = _own_sessions[region] = new_session(
            region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
    return session


class Environment:
    """Set and unset environment variables, and put them all back."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        self._saved.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


def isolate_aws(env: Environment, region: str) -> None:
    """Fake credentials, the harness's region, and no endpoint, profile or config file of the
    machine: every client must end in moto."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in _AWS_UNSET:
            env.set(name, None)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_REGION", region),
        ("AWS_CONFIG_FILE", os.devnull),
        ("AWS_SHARED_CREDENTIALS_FILE", os.devnull),
    ):
        env.set(name, value)
    # Workers are configured one by one (`register`), never from the environment.
    for name in ("JOBKIT_WORKER_QUEUE", "JOBKIT_QUEUE_URL", "JOBKIT_DEAD_LETTER_QUEUE_URL"):
        env.set(name, None)
