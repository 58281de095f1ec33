"""What the harness hands tests: its error, the emails SES accepted, dead letters, and the
Lambda context a worker gets."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any


class HarnessError(Exception):
    """The harness cannot do what was asked (time backwards, a loop that never lets time pass,
    messages hidden until a moment it was not told, a missing `testing` extra)."""


@dataclass(frozen=True)
class SentEmail:
    """One email moto's SES (v1 or v2) accepted."""

    source: str
    to: list[str]
    subject: str
    body: str  # the HTML part if there is one (moto keeps one part), or the raw message


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, with its message attributes."""

    body: str
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        """Why jobkit dead-lettered it (`jobkit-reason`)."""
        return self.attributes.get("jobkit-reason")

    @property
    def job_id(self) -> str | None:
        return self.attributes.get("jobkit-job-id")

    def envelope(self) -> dict[str, Any]:
        """The body as JSON (a jobkit envelope, with its `dead_letter` mark)."""
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class LambdaContext:
    """What Lambda hands a handler, as far as Powertools and the worker read it. The remaining
    time stays at the function's timeout: the clock does not move during a batch."""

    function_name: str
    invoked_function_arn: str
    timeout_seconds: float
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "jobkit-testing"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_seconds * 1000)
