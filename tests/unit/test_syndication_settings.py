"""The syndication worker's settings, read once from the environment, and what they build."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from jobkit.settings import worker_environment
from syndication_worker import processors
from syndication_worker.settings import SyndicationSettings, get_syndication_settings
from tests.conftest import template


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
    # And partners on private networks are refused (the setting's default)
    assert runtime.sender.allow_private_networks is False


@pytest.mark.parametrize(("value", "allowed"), [("true", True), ("false", False)])
def test_private_networks_are_allowed_only_when_the_setting_says_so(
    fresh: None, monkeypatch: pytest.MonkeyPatch, value: str, allowed: bool
) -> None:
    # Given the function's environment with SYNDICATION_ALLOW_PRIVATE_NETWORKS set, as the
    # template's parameter (or the local stack, with "true") sets it
    monkeypatch.setenv("SYNDICATION_PARTNERS_PATH", "/jobkit/dev/partners")
    monkeypatch.setenv("SYNDICATION_RATE_LIMIT_TABLE", "rate-limits")
    monkeypatch.setenv("SYNDICATION_ALLOW_PRIVATE_NETWORKS", value)
    # When the processors build their runtime, then its sender does what the setting says
    assert processors.runtime().sender.allow_private_networks is allowed


def test_the_template_refuses_private_networks_unless_its_parameter_allows_them() -> None:
    # Given template.yaml
    parameters = template()["Parameters"]
    function = template()["Resources"]["SyndicationFunction"]["Properties"]
    # Then the parameter is "false" by default, with "true" the only other value
    parameter = parameters["SyndicationAllowPrivateNetworks"]
    assert parameter["Type"] == "String"
    assert parameter["Default"] == "false"
    assert sorted(parameter["AllowedValues"]) == ["false", "true"]
    assert parameter["Description"]
    # And the syndication function reads it (its worker block's Config, exported at start)
    env = worker_environment(
        {
            "JOBKIT_WORKER_CONFIG": function["Environment"]["Variables"]["JOBKIT_WORKER_CONFIG"][
                "Fn::Sub"
            ]
        }
    )
    assert env["SYNDICATION_ALLOW_PRIVATE_NETWORKS"] == "${SyndicationAllowPrivateNetworks}"
    # And each allowed value is one the settings read as the boolean it means
    for value in parameter["AllowedValues"]:
        settings = SyndicationSettings(
            partners_path="/p", rate_limit_table="t", allow_private_networks=value
        )
        assert settings.allow_private_networks is (value == "true")


def test_a_partners_path_must_be_an_ssm_path(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATION_RATE_LIMIT_TABLE", "rate-limits")
    monkeypatch.setenv("SYNDICATION_PARTNERS_PATH", "jobkit/dev/partners")
    with pytest.raises(ValidationError, match="SSM path"):
        SyndicationSettings()
    monkeypatch.delenv("SYNDICATION_PARTNERS_PATH")
    with pytest.raises(ValidationError, match="partners_path"):
        SyndicationSettings()
