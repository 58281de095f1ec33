"""The syndication worker's settings, read once from the environment, and what they build."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from syndication_worker import processors
from syndication_worker.settings import SyndicationSettings, get_syndication_settings


@pytest.fixture
def fresh() -> Iterator[None]:
    get_syndication_settings.cache_clear()
    previous = processors.use_runtime(None)
    yield
    processors.use_runtime(previous)
    get_syndication_settings.cache_clear()


def test_the_runtime_is_built_from_the_environment(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment as template.yaml sets it
    monkeypatch.setenv("SYNDICATION_PARTNERS_PATH", "/jobkit/dev/partners/")
    monkeypatch.setenv("SYNDICATION_RATE_LIMIT_TABLE", "rate-limits")
    monkeypatch.setenv("SYNDICATION_CA_BUNDLE", "")
    # When the processors first need their runtime
    runtime = processors.runtime()
    # Then the registry reads that path (no trailing slash), cached a minute, and the limiter
    # that table; the runtime is made once
    assert runtime.registry.path == "/jobkit/dev/partners"
    assert runtime.registry.max_age == 60
    assert runtime.limiter.table == "rate-limits"
    assert processors.runtime() is runtime


def test_a_partners_path_must_be_an_ssm_path(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATION_RATE_LIMIT_TABLE", "rate-limits")
    monkeypatch.setenv("SYNDICATION_PARTNERS_PATH", "jobkit/dev/partners")
    with pytest.raises(ValidationError, match="SSM path"):
        SyndicationSettings()
    monkeypatch.delenv("SYNDICATION_PARTNERS_PATH")
    with pytest.raises(ValidationError, match="partners_path"):
        SyndicationSettings()
