"""Job types: declared once, imported by producers and workers alike (no worker code here)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from jobkit.errors import DeclarationError, JobValidationError, UnknownJobTypeError


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between attempts: base * 2^(n-1), capped, then jittered.

    "Equal jitter": half the delay is kept, half is random, so retries of many jobs that failed
    together spread out but none comes back immediately.
    """

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        try:
            growth = 2.0 ** max(attempt - 1, 0)
        except OverflowError:  # attempt > 1024: long past any cap
            growth = math.inf
        ceiling = float(min(self.cap, self.base * growth))
        jitter = float((rng or random.Random()).uniform(0, ceiling / 2))
        return ceiling / 2 + jitter


@dataclass(frozen=True)
class Retention:
    """How long the job log keeps a finished job (DynamoDB TTL)."""

    succeeded: timedelta = timedelta(days=7)
    failed: timedelta = timedelta(days=30)
    cancelled: timedelta = timedelta(days=7)


class Guarantee(StrEnum):
    """What a job type promises about its side effect (the email sent, the webhook posted)
    when a worker dies between doing it and recording it.

    - `at_least_once` (the default): the job is run again by the next attempt, so the side
      effect may happen twice. Right when a miss is worse than a repeat, or the far side
      deduplicates (an idempotency key).
    - `at_most_once`: the claim marks the attempt before the processor runs; a job found
      still marked by an attempt that never finished (a crash, a timeout) is failed as
      "outcome unknown" for a person to check, never run again. So are errors that leave the
      outcome unknown (`OutcomeUnknownError`, and any exception but a `TransientError`). Right
      when a repeat is worse than a miss.
    """

    AT_LEAST_ONCE = "at_least_once"
    AT_MOST_ONCE = "at_most_once"


class Tracking(StrEnum):
    """How much of a job's life the job log keeps (README "Tracking modes").

    - `full` (the default): the producer writes the job at enqueue (deduplicated by id
      there), the worker claims it and records its outcome: 3 writes on the happy path.
    - `light`: nothing is written at enqueue; the worker's claim creates the item (still
      deduplicated by id, at the claim): 2 writes. Not in the log until a worker claims it.
    - `failures`: the log keeps only jobs that retry, fail or are cancelled. The worker reads
      first (an eventually consistent GetItem); a job not in the log runs with no claim and
      no lease, and a success writes nothing. Not with `Guarantee.AT_MOST_ONCE`.
    """

    FULL = "full"
    LIGHT = "light"
    FAILURES = "failures"


_REGISTRY: dict[str, JobType] = {}


@dataclass(frozen=True)
class JobType:
    """A kind of job: its name, payload model, queue and retry policy.

    Declaring one registers it, so `jobkit.enqueue("email.send_invite", ...)` works by name too.
    """

    name: str
    payload: type[BaseModel]
    queue: str
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float = 25.0
    retention: Retention = field(default_factory=Retention)
    description: str = ""
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    tracking: Tracking = Tracking.FULL

    def __post_init__(self) -> None:
        if not self.name or " " in self.name:
            raise DeclarationError(
                f"job type name must be one word like 'email.send_invite', not {self.name!r}"
            )
        if self.max_attempts < 1:
            raise DeclarationError(f"{self.name}: max_attempts must be at least 1")
        if not 0 < self.timeout < math.inf:
            raise DeclarationError(f"{self.name}: timeout must be a positive number of seconds")
        object.__setattr__(self, "guarantee", Guarantee(self.guarantee))
        if self.tracking not in tuple(Tracking):
            known = ", ".join(repr(t.value) for t in Tracking)
            raise DeclarationError(f"{self.name}: tracking is one of {known}")
        object.__setattr__(self, "tracking", Tracking(self.tracking))
        if self.tracking is Tracking.FAILURES and self.guarantee is Guarantee.AT_MOST_ONCE:
            raise DeclarationError(
                f"{self.name}: tracking='failures' cannot go with guarantee='at_most_once': "
                "a job that is not in the log runs with no claim and no lease, so a duplicate "
                "delivery could run it twice; use tracking='light' (claimed like 'full')"
            )
        _REGISTRY[self.name] = self

    def validate(self, payload: BaseModel | dict[str, Any]) -> BaseModel:
        """The payload as this type's model, or `JobValidationError` naming each bad field."""
        if isinstance(payload, self.payload):
            return payload
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        try:
            return self.payload.model_validate(data)
        except PydanticValidationError as exc:
            raise JobValidationError(self.name, describe_validation_error(exc)) from None

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the payload, for producers written in other languages."""
        schema = self.payload.model_json_schema()
        schema["title"] = self.name
        return schema


def describe_validation_error(exc: PydanticValidationError) -> list[str]:
    """One line per bad field, without echoing the input (it may be personal data)."""
    return [
        f"{'.'.join(str(p) for p in err['loc']) or '<payload>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    ]


def get_job_type(job_type: JobType | str) -> JobType:
    """Resolve a job type given by object or by name."""
    if isinstance(job_type, JobType):
        return job_type
    try:
        return _REGISTRY[job_type]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none declared"
        raise UnknownJobTypeError(f"unknown job type {job_type!r} (known: {known})") from None


def registered_job_types() -> dict[str, JobType]:
    """Every declared job type by name."""
    return dict(_REGISTRY)


def export_schemas() -> str:
    """JSON Schemas of every declared job type, keyed by name."""
    return json.dumps({name: t.json_schema() for name, t in sorted(_REGISTRY.items())}, indent=2)
