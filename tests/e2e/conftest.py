"""The local stack for e2e tests: the real template, and a tiny probe function's template.

Each stack runs on its own moto server on a free port, logs to the test's temporary folder and
never writes the project's `.jobkit/`; leaving the fixture stops every process it started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobkit import aws
from jobkit.client import Jobkit
from jobkit.settings import Settings
from jobkit_tools.local import LocalStack

ROOT = Path(__file__).resolve().parents[2]

# A function that does what each message asks, once (on its first receive), and records every
# invocation to PROBE_OUT: which process ran it, which records it got, what it saw.
PROBE_APP = """
import json, os, sys, time

OUT = os.environ["PROBE_OUT"]


def handler(event, context):
    started = time.time()
    records = event["Records"]
    bodies = [json.loads(r["body"]) for r in records]
    marker = {"phase": "start", "pid": os.getpid(), "ids": [b["id"] for b in bodies]}
    with open(OUT, "a") as out:
        out.write(json.dumps(marker) + "\\n")
    for body in bodies:
        if body["action"] == "slow":
            time.sleep(body.get("seconds", 0.5))
    seen = {
        "phase": "end",
        "started": started,
        "ended": time.time(),
        "pid": os.getpid(),
        "ids": [b["id"] for b in bodies],
        "receive_counts": [int(r["attributes"]["ApproximateReceiveCount"]) for r in records],
        "record": records[0],
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "env": {k: os.environ.get(k) for k in (
            "PROBE_SETTING", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_DEFAULT_REGION",
            "HOME_SECRET",
        )},
    }
    with open(OUT, "a") as out:
        out.write(json.dumps(seen) + "\\n")
    print("probe got", len(records), "records")  # a log line, not an answer
    failures = []
    for record, body in zip(records, bodies):
        first = record["attributes"]["ApproximateReceiveCount"] == "1"
        if body["action"] == "sleep" and first:
            time.sleep(30)
        if body["action"] == "raise" and first:
            raise RuntimeError("probe asked to raise")
        if body["action"] == "fail" and first:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

PROBE_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Setting:
    Type: String
    Default: from-template
  AlertEmail:
    Type: String
    Default: ops@example.com
Conditions:
  HasAlertEmail: !Not [!Equals [!Ref AlertEmail, ""]]
  Never: !Equals [a, b]
Resources:
  # Types moto's CloudFormation skips: the local stack creates them through their APIs.
  AlertTopic:
    Type: AWS::SNS::Topic
  AlertSubscription:
    Type: AWS::SNS::Subscription
    Condition: HasAlertEmail
    Properties:
      TopicArn: !Ref AlertTopic
      Protocol: email
      Endpoint: !Ref AlertEmail
  NeverSubscription:
    Type: AWS::SNS::Subscription
    Condition: Never
    Properties:
      TopicArn: !Ref AlertTopic
      Protocol: email
      Endpoint: never@example.com
  BacklogAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/SQS
      MetricName: ApproximateNumberOfMessagesVisible
      Dimensions:
        - Name: QueueName
          Value: !GetAtt ProbeQueue.QueueName
      Statistic: Maximum
      Period: 60
      EvaluationPeriods: "1"
      Threshold: 100
      ComparisonOperator: GreaterThanThreshold
      AlarmActions: [!Ref AlertTopic]
  ProbeQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 3
  ProbeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: probe/
      Handler: app.handler
      Runtime: python3.13
      Timeout: 2
      MemorySize: 192
      Environment:
        Variables:
          PROBE_OUT: {out}
          PROBE_SETTING: !Ref Setting
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt ProbeQueue.Arn
            BatchSize: 3
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig:
              MaximumConcurrency: 2
Outputs:
  ProbeQueueUrl:
    Value: !Ref ProbeQueue
"""


def write_probe_project(folder: Path) -> Path:
    """A project folder with the probe template and function; returns the template path."""
    (folder / "probe").mkdir(parents=True)
    (folder / "probe" / "app.py").write_text(PROBE_APP)
    template = folder / "template.yaml"
    template.write_text(PROBE_TEMPLATE.format(out=folder / "probe.jsonl"))
    return template


class Probe:
    """The probe's record of invocations, and the queue to send it work."""

    def __init__(self, stack: LocalStack, out: Path) -> None:
        self.stack = stack
        self.out = out
        self.queue_url = stack.deployment.outputs["ProbeQueueUrl"]

    def send(self, *messages: dict[str, Any]) -> None:
        from jobkit_tools.local.stack import client

        sqs = client("sqs", self.stack.endpoint_url)
        for start in range(0, len(messages), 10):
            sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(m)}
                    for i, m in enumerate(messages[start : start + 10])
                ],
            )

    def invocations(self, ids: set[str] | None = None) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        seen = [json.loads(line) for line in self.out.read_text().splitlines() if line]
        return [s for s in seen if ids is None or ids & set(s["ids"])]

    def finished(self, ids: set[str] | None = None) -> list[dict[str, Any]]:
        """Invocations that returned (or raised), with what the handler saw."""
        return [s for s in self.invocations(ids) if s["phase"] == "end"]

    def depth(self) -> int:
        return self.stack.queue_depth(self.queue_url)


def wait_until(
    condition: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    folder = tmp_path_factory.mktemp("probe")
    template = write_probe_project(folder)
    with LocalStack(template, log_dir=folder / "logs") as stack:
        yield Probe(stack, folder / "probe.jsonl")


@pytest.fixture(scope="module")
def jobkit_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real template.yaml, with the SES throttling proxy in front of the email function."""
    folder = tmp_path_factory.mktemp("jobkit")
    with LocalStack(
        ROOT / "template.yaml",
        {"EmailMaximumConcurrency": "3"},
        ses_fault_injection=True,
        log_dir=folder / "logs",
        state_file=folder / ".jobkit" / "local.json",
    ) as stack:
        yield stack


@pytest.fixture
def producer(jobkit_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobkit]:
    """A jobkit client configured the way a producer process would be: by environment."""
    import jobkit_apps.email  # noqa: F401  (declares the email job types)

    for key, value in jobkit_stack.producer_env().items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield Jobkit(Settings())
    aws.reset_clients()
