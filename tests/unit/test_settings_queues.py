"""Producers find every queue by the stack's naming; a worker's own settings arrive as one
JSON variable (its block's Config)."""

from __future__ import annotations

import pytest

from jobkit.errors import ConfigurationError
from jobkit.settings import Settings, worker_environment
from jobkit_tools.discover import settings_from_outputs

PREFIX = "https://sqs.us-east-1.amazonaws.com/123456789012/jobkit-dev-"


def test_a_queue_added_later_is_found_by_the_prefix_alone() -> None:
    # Given settings with the stack's queue URL prefix and no map
    settings = Settings(queue_url_prefix=PREFIX)
    # Then any queue, and its dead-letter queue, is <prefix><name>[-dlq]
    assert settings.queue_url_of("webhooks") == PREFIX + "webhooks"
    assert settings.dead_letter_queue_url_of("webhooks") == PREFIX + "webhooks-dlq"
    assert settings.dead_letter_queue_url_or_none("webhooks") == PREFIX + "webhooks-dlq"


def test_a_queue_map_wins_over_the_prefix() -> None:
    # Given a queue named elsewhere by the map
    settings = Settings(
        queue_url_prefix=PREFIX,
        queues={"email": "https://elsewhere/email"},
        dead_letter_queues={"email": "https://elsewhere/email-dead"},
    )
    # Then the map's URLs are used for it, the prefix for the rest
    assert settings.queue_url_of("email") == "https://elsewhere/email"
    assert settings.dead_letter_queue_url_of("email") == "https://elsewhere/email-dead"
    assert settings.queue_url_of("nightly") == PREFIX + "nightly"


def test_without_prefix_or_map_the_error_says_what_to_set() -> None:
    settings = Settings()
    with pytest.raises(ConfigurationError, match="JOBKIT_QUEUE_URL_PREFIX"):
        settings.queue_url_of("email")
    with pytest.raises(ConfigurationError, match="JOBKIT_QUEUE_URL_PREFIX"):
        settings.dead_letter_queue_url_of("email")
    assert settings.dead_letter_queue_url_or_none("email") is None


def test_a_deployed_stacks_outputs_give_the_prefix() -> None:
    # Given a deployed stack's outputs (its workers are nested stacks: no per-queue outputs)
    outputs = {"JobsTableName": "jobs", "QueueUrlPrefix": PREFIX, "ScheduleGroupName": "g"}
    # Then its settings find every queue
    settings = settings_from_outputs(outputs)
    assert settings.table == "jobs"
    assert settings.queue_url_of("email") == PREFIX + "email"


def test_the_worker_config_becomes_variables_and_a_variable_set_directly_wins() -> None:
    # Given a function's environment with its block's Config and one variable set directly
    environ = {
        "JOBKIT_WORKER_CONFIG": '{"EMAIL_FROM_ADDRESS": "a@example.com", "B": "config", "N": 3}',
        "B": "direct",
    }
    # Then the config's variables are there as strings, and the direct one is kept
    env = worker_environment(environ)
    assert env["EMAIL_FROM_ADDRESS"] == "a@example.com"
    assert env["B"] == "direct"
    assert env["N"] == "3"
    assert worker_environment({}) == {}


@pytest.mark.parametrize("raw", ["{not json", '["a list"]', '"text"'])
def test_a_config_that_is_not_a_json_object_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="JOBKIT_WORKER_CONFIG"):
        worker_environment({"JOBKIT_WORKER_CONFIG": raw})
