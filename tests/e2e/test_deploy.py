"""Deploying a template on moto: what moto's CloudFormation skips is created anyway."""

from __future__ import annotations

import pytest

from jobkit_tools.local.stack import LocalStackError, check_parameters, client, load_template

from .conftest import ROOT, Probe

pytestmark = pytest.mark.e2e


def test_resources_moto_skips_are_created_through_their_apis(probe: Probe) -> None:
    # Given the probe template: an alarm, and two conditional SNS subscriptions (one switched off)
    deployment = probe.stack.deployment
    url = probe.stack.endpoint_url

    # Then the alarm and the subscription whose condition holds exist, the other does not
    assert set(deployment.lifted) == {"BacklogAlarm", "AlertSubscription"}
    assert deployment.skipped == []
    (alarm,) = client("cloudwatch", url).describe_alarms()["MetricAlarms"]
    queue_name = probe.queue_url.rsplit("/", 1)[-1]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]
    assert alarm["EvaluationPeriods"] == 1  # "1" in the template, as CloudFormation allows
    (subscription,) = client("sns", url).list_subscriptions()["Subscriptions"]
    assert subscription["Endpoint"] == "ops@example.com"
    assert subscription["TopicArn"] == alarm["AlarmActions"][0]
    # And the event source mapping is enabled, as CloudFormation leaves it: moto's queues never
    # invoke a function themselves (motoserver.py); the local poller does, while it is enabled
    (esm,) = client("lambda", url).list_event_source_mappings()["EventSourceMappings"]
    assert esm["State"] == "Enabled"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"EmailMaximumConcurrency": "1"}, "below MinValue 2"),
        ({"Environment": "qa"}, "not one of"),
        ({"EmailBatchSize": "ten"}, "not a number"),
        ({"Nope": "x"}, "no such parameter"),
    ],
)
def test_parameter_values_cloudformation_would_refuse_are_refused(
    overrides: dict[str, str], message: str
) -> None:
    # Given template.yaml, When a parameter override breaks its constraints, Then deploy refuses
    with pytest.raises(LocalStackError, match=message):
        check_parameters(load_template(ROOT / "template.yaml"), overrides)
