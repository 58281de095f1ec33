"""Settings: one validated model, read from the environment once per process."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobkit.errors import ConfigurationError


class Settings(BaseSettings):
    """What a producer or worker needs to find the stack.

    `JOBKIT_TABLE` names the job log, `JOBKIT_QUEUES` maps queue names to URLs (JSON) and
    `JOBKIT_DEAD_LETTER_QUEUES` their DLQs. A worker also knows its own queue and DLQ.
    """

    model_config = SettingsConfigDict(env_prefix="JOBKIT_", frozen=True, extra="ignore")

    table: str = Field(default="", description="DynamoDB job-log table name.")
    queues: dict[str, str] = Field(default_factory=dict, description="Queue name -> queue URL.")
    dead_letter_queues: dict[str, str] = Field(
        default_factory=dict, description="Queue name -> its dead-letter queue URL (redrive)."
    )
    schedule_group: str = Field(default="", description="Scheduler group of delayed jobs.")
    scheduler_role_arn: str = Field(default="", description="Role Scheduler sends jobs with.")
    recurring_group: str = Field(default="", description="Scheduler group of recurring jobs.")
    worker_queue: str = Field(default="", description="The queue this worker consumes.")
    queue_url: str = Field(default="", description="URL of this worker's queue.")
    dead_letter_queue_url: str = Field(default="", description="URL of this worker's DLQ.")
    max_receive_count: int = Field(
        default=10,
        ge=2,
        description="This worker's queue's redrive maxReceiveCount: a message deferred this "
        "often is replaced by a fresh copy before SQS would move it to the DLQ.",
    )

    @field_validator("queues", "dead_letter_queues", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return {} if value in ("", None) else value

    def queue_url_of(self, queue: str) -> str:
        try:
            return self.queues[queue]
        except KeyError:
            raise ConfigurationError(
                f'no URL for queue {queue!r}: set JOBKIT_QUEUES, e.g. \'{{"{queue}": "https://..."}}\''
            ) from None

    def dead_letter_queue_url_of(self, queue: str) -> str:
        try:
            return self.dead_letter_queues[queue]
        except KeyError:
            raise ConfigurationError(
                f"no dead-letter queue URL for queue {queue!r}: set JOBKIT_DEAD_LETTER_QUEUES"
            ) from None

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

    def require_table(self) -> str:
        if not self.table:
            raise ConfigurationError("no job-log table: set JOBKIT_TABLE")
        return self.table


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
