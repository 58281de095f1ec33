"""The local event source mapping runs a function the way Lambda's SQS poller does.

A probe function (tests/e2e/conftest.py) does what each message asks on its first receive
(succeed, report itself failed, raise, sleep past the timeout) and records what it saw.
Its template: BatchSize 3, window 1 s, MaximumConcurrency 2, Timeout 2 s, visibility 3 s.
"""

from __future__ import annotations

import os
import uuid

import pytest

from jobkit_tools.local.esm_container import Container

from .conftest import Probe, wait_until

pytestmark = pytest.mark.e2e


def ids(n: int, prefix: str) -> list[str]:
    return [f"{prefix}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]


def test_batches_never_exceed_batch_size_and_succeeded_records_are_deleted(probe: Probe) -> None:
    # Given seven messages on the queue of a mapping with BatchSize 3
    wanted = ids(7, "ok")
    probe.send(*({"id": i, "action": "ok"} for i in wanted))

    # When the poller has handed them all to the function
    wait_until(
        lambda: {i for s in probe.finished(set(wanted)) for i in s["ids"]} == set(wanted),
        timeout=30,
        what="all seven records to be handled",
    )

    # Then each was handled once, in batches of at most 3, and none is left in the queue
    seen = probe.finished(set(wanted))
    assert all(len(s["ids"]) <= 3 for s in seen)
    assert sorted(i for s in seen for i in s["ids"]) == sorted(wanted)
    wait_until(lambda: probe.depth() == 0, timeout=10, what="the queue to be empty")


def test_a_record_reported_failed_comes_back_and_the_others_do_not(probe: Probe) -> None:
    # Given a batch in which the function reports one record in batchItemFailures
    ok_a, failing, ok_b = ids(3, "partial")
    probe.send(
        {"id": ok_a, "action": "ok"},
        {"id": failing, "action": "fail"},
        {"id": ok_b, "action": "ok"},
    )

    # When the failed record's visibility timeout (3 s) has passed
    wait_until(
        lambda: any(2 in s["receive_counts"] for s in probe.finished({failing})),
        timeout=30,
        what="the failed record to come back",
    )

    # Then only the failed record was delivered again; the others were deleted after one run
    def runs(message_id: str) -> int:
        return sum(s["ids"].count(message_id) for s in probe.finished({message_id}))

    assert runs(failing) == 2
    assert runs(ok_a) == 1
    assert runs(ok_b) == 1
    wait_until(lambda: probe.depth() == 0, timeout=10, what="the queue to be empty")


def test_a_handler_error_returns_the_whole_batch(probe: Probe) -> None:
    # Given a batch whose handler raises
    raising, bystander = ids(2, "raise")
    probe.send({"id": raising, "action": "raise"}, {"id": bystander, "action": "ok"})

    # When the batch's messages come back after the visibility timeout
    wait_until(
        lambda: any(2 in s["receive_counts"] for s in probe.finished({raising})),
        timeout=30,
        what="the raising record to come back",
    )

    # Then every record that shared the raising record's batch was delivered again
    first = next(s for s in probe.finished({raising}) if 1 in s["receive_counts"])
    for message_id in first["ids"]:
        wait_until(
            lambda m=message_id: len(probe.finished({m})) >= 2,
            timeout=30,
            what="its batch to come back",
        )
    wait_until(lambda: probe.depth() == 0, timeout=10, what="the queue to be empty")


def test_a_function_past_its_timeout_is_killed_and_its_message_comes_back(probe: Probe) -> None:
    # Given a message whose handler sleeps 30 s on a function with Timeout: 2
    sleeper = ids(1, "sleep")[0]
    probe.send({"id": sleeper, "action": "sleep"})

    # When the function times out and the message's visibility timeout passes
    wait_until(
        lambda: any(2 in s["receive_counts"] for s in probe.finished({sleeper})),
        timeout=30,
        what="the timed-out record to come back",
    )

    # Then the container that timed out was killed, and a fresh one ran the message again
    first, second = sorted(probe.finished({sleeper}), key=lambda s: s["started"])[:2]
    assert first["receive_counts"] == [1] and second["receive_counts"] == [2]
    assert first["pid"] != second["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)
    poller = probe.stack.pollers[0]
    assert poller.stats.timeouts >= 1
    wait_until(lambda: probe.depth() == 0, timeout=10, what="the queue to be empty")


def test_at_most_maximum_concurrency_invocations_run_at_once(probe: Probe) -> None:
    # Given twelve slow messages (0.5 s each) and MaximumConcurrency 2
    slow = ids(12, "slow")
    probe.send(*({"id": i, "action": "slow"} for i in slow))

    # When they have all been handled
    wait_until(
        lambda: {i for s in probe.finished(set(slow)) for i in s["ids"]} == set(slow),
        timeout=60,
        what="all slow records to be handled",
    )

    # Then no more than two invocations ever overlapped
    spans = [(s["started"], s["ended"]) for s in probe.finished(set(slow))]
    overlap = max(sum(1 for a, b in spans if a <= start < b) for start, _ in spans)
    assert overlap <= 2
    assert len(spans) >= 4  # 12 records, at most 3 a batch


def test_the_function_runs_with_its_own_environment_and_a_real_sqs_event(probe: Probe) -> None:
    # Given a message
    message_id = ids(1, "env")[0]
    probe.send({"id": message_id, "action": "ok"})

    # When the function has handled it
    seen = wait_until(lambda: probe.finished({message_id}), timeout=30, what="the record")[0]

    # Then it ran in its code folder with the template's environment, pointed at moto
    function = probe.stack.deployment.functions[0]
    assert seen["cwd"] == str(function.code_dir) == seen["path0"]
    assert seen["env"]["PROBE_SETTING"] == "from-template"
    assert seen["env"]["AWS_ENDPOINT_URL"] == probe.stack.endpoint_url
    assert seen["env"]["AWS_LAMBDA_FUNCTION_NAME"] == function.name == seen["function_name"]
    assert seen["env"]["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "2"
    assert seen["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "192" and seen["memory"] == 192
    assert 0 < seen["remaining_ms"] <= 2000
    # And the event is an SQS event as Lambda builds it
    record = seen["record"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == probe.stack.deployment.mappings[0].queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert {"messageId", "receiptHandle", "body", "md5OfBody", "messageAttributes"} <= set(record)
    assert {"ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )


def test_the_dev_process_environment_does_not_leak_into_functions(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a variable in the dev process's environment
    monkeypatch.setenv("HOME_SECRET", "do-not-pass")

    # When a container's environment is built
    env = Container.environment(probe.stack.deployment.functions[0], "http://127.0.0.1:1", 1)

    # Then it holds the function's variables, not the dev process's
    assert "HOME_SECRET" not in env
    assert env["PROBE_SETTING"] == "from-template"
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
