"""Settings: one validated model, read from the environment once per process."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobkit.errors import ConfigurationError

WORKER_CONFIG = "JOBKIT_WORKER_CONFIG"


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment with its own settings added: the worker block's `Config`
    parameter reaches the function as one JSON object in JOBKIT_WORKER_CONFIG (CloudFormation
    cannot pass a map of variables to a nested stack); a variable set directly wins."""
    raw = environ.get(WORKER_CONFIG) or "{}"
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{WORKER_CONFIG} is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConfigurationError(f"{WORKER_CONFIG} must be a JSON object of variables")
    return {**{str(k): str(v) for k, v in config.items()}, **environ}


def export_worker_config() -> None:
    """Put the worker's own settings into the process environment, before any settings model
    reads it (called once, when this module is first imported)."""
    if os.environ.get(WORKER_CONFIG):
        for name, value in worker_environment(os.environ).items():
            os.environ.setdefault(name, value)


export_worker_config()


class Settings(BaseSettings):
    """What a producer or worker needs to find the stack.

    `JOBKIT_TABLE` names the job log. Queue `<name>` is at `JOBKIT_QUEUE_URL_PREFIX` + name
    and its dead-letter queue at prefix + name + `-dlq` (the stack's naming); `JOBKIT_QUEUES`
    and `JOBKIT_DEAD_LETTER_QUEUES` (JSON name -> URL) name queues elsewhere and win over it.
    A worker also knows its own queue and DLQ.
    """

    model_config = SettingsConfigDict(env_prefix="JOBKIT_", frozen=True, extra="ignore")

    table: str = Field(default="", description="DynamoDB job-log table name.")
    pages_table: str = Field(
        default="", description="Table of the pages each worker batch writes (job listings)."
    )
    pages_from_stream: bool = Field(
        default=True,
        description="A worker setting: the job log's stream writes the job pages "
        "(jobkit.pages_feed, in every stack template.yaml deploys), so the worker writes "
        "none. False where nothing reads the stream (tests on moto): each worker batch "
        "writes a page of the jobs it claimed.",
    )
    queue_url_prefix: str = Field(
        default="", description="Queue URLs but the name: <prefix><name>, <prefix><name>-dlq."
    )
    queues: dict[str, str] = Field(default_factory=dict, description="Queue name -> queue URL.")
    dead_letter_queues: dict[str, str] = Field(
        default_factory=dict, description="Queue name -> its dead-letter queue URL (redrive)."
    )
    schedule_group: str = Field(default="", description="Scheduler group of delayed jobs.")
    scheduler_role_arn: str = Field(default="", description="Role Scheduler sends jobs with.")
    recurring_group: str = Field(default="", description="Scheduler group of recurring jobs.")
    metrics_namespace: str = Field(
        default="jobkit",
        description="CloudWatch namespace of the workers' job metrics (their "
        "POWERTOOLS_METRICS_NAMESPACE), read by `Jobkit.job_activity`.",
    )
    worker_queue: str = Field(default="", description="The queue this worker consumes.")
    queue_url: str = Field(default="", description="URL of this worker's queue.")
    dead_letter_queue_url: str = Field(default="", description="URL of this worker's DLQ.")
    max_receive_count: int = Field(
        default=10,
        ge=2,
        description="This worker's queue's redrive maxReceiveCount: a message deferred this "
        "often is replaced by a fresh copy before SQS would move it to the DLQ.",
    )
    types: str = Field(
        default="",
        description="Comma-separated modules that declare job types, imported by the HTTP API "
        "function (and the CLI) besides the built-in apps' (JOBKIT_TYPES).",
    )
    health_max_age_seconds: float = Field(
        default=300.0,
        gt=0,
        description="The HTTP API's GET /health is unhealthy when a queue's oldest message is "
        "older than this (the stack's QueueAgeAlarmSeconds: jobs start within 5 minutes).",
    )

    @field_validator("queues", "dead_letter_queues", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return {} if value in ("", None) else value

    def queue_url_of(self, queue: str) -> str:
        if queue in self.queues:
            return self.queues[queue]
        if self.queue_url_prefix:
            return self.queue_url_prefix + queue
        raise ConfigurationError(
            f"no URL for queue {queue!r}: set JOBKIT_QUEUE_URL_PREFIX (stack output "
            f'QueueUrlPrefix) or JOBKIT_QUEUES, e.g. \'{{"{queue}": "https://..."}}\''
        )

    def dead_letter_queue_url_of(self, queue: str) -> str:
        url = self.dead_letter_queue_url_or_none(queue)
        if url is None:
            raise ConfigurationError(
                f"no dead-letter queue URL for queue {queue!r}: set JOBKIT_QUEUE_URL_PREFIX "
                "or JOBKIT_DEAD_LETTER_QUEUES"
            )
        return url

    def dead_letter_queue_url_or_none(self, queue: str) -> str | None:
        if queue in self.dead_letter_queues:
            return self.dead_letter_queues[queue]
        return f"{self.queue_url_prefix}{queue}-dlq" if self.queue_url_prefix else None

    def require_scheduler(self) -> tuple[str, str]:
        if not (self.schedule_group and self.scheduler_role_arn):
            raise ConfigurationError(
                "jobs due in more than 15 minutes need EventBridge Scheduler: set "
                "JOBKIT_SCHEDULE_GROUP and JOBKIT_SCHEDULER_ROLE_ARN"
            )
        return self.schedule_group, self.scheduler_role_arn

    def require_recurring(self) -> tuple[str, str]:
        if not (self.recurring_group and self.scheduler_role_arn):
            raise ConfigurationError(
                "recurring schedules need EventBridge Scheduler: set JOBKIT_RECURRING_GROUP "
                "and JOBKIT_SCHEDULER_ROLE_ARN"
            )
        return self.recurring_group, self.scheduler_role_arn

    def require_pages_table(self) -> str:
        if not self.pages_table:
            raise ConfigurationError(
                "listing jobs of a queue or type needs the pages table: set JOBKIT_PAGES_TABLE "
                "(stack output JobPagesTableName)"
            )
        return self.pages_table

    def require_table(self) -> str:
        if not self.table:
            raise ConfigurationError("no job-log table: set JOBKIT_TABLE")
        return self.table


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
