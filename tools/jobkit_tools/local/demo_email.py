"""The demo's email part: 238 enqueue attempts the ways producers make them, and their checks.

Valid jobs one at a time and in batches, the same id twice, invalid input (rejected at enqueue,
alone, the rest of its batch going through), raw envelopes from "another language" (failing
in the worker, into the DLQ) and `flaky*` recipients, whose first SES call the stack's proxy
throttles (they succeed on attempt 2).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobkit_tools.local.stack import client

if TYPE_CHECKING:
    from jobkit.client import EnqueueRequest, Jobkit
    from jobkit.models import Job
    from jobkit_tools.local.local_stack import LocalStack

VALID_JOBS = 200  # 150 through enqueue_many, 50 through enqueue
BATCHED = 150
DUPLICATES = 20  # 10 repeated inside an enqueue_many batch, 10 enqueued again one by one
FLAKY = 10  # throttled by the SES proxy on their first attempt; one every FLAKY_EVERY jobs
FLAKY_EVERY = 15
RAW_INVALID = 8  # envelopes sent straight to SQS, with an address that does not validate
INVALID_ADDRESSES = (
    "not-an-address",
    "ada@",
    "@example.com",
    "ada@@example.com",
    "ada lovelace@example.com",
    "ada@example",
    "ada@-example.com",
    "ada@example..com",
    "ada@example.com, bob@example.com",
    "ada@exa mple.com",
)  # the first 10 are enqueued one by one, the first 5 again in a batch: 15 rejections
REJECTED_BATCHED = 5

# Flaky recipients are spread through the workload (one every FLAKY_EVERY jobs), as throttling
# would hit a real one: each throttled call holds its batch for a few seconds of SES client
# retries, so a batch full of them would run into the function's timeout.
_FLAKY_AFTER = {FLAKY_EVERY * (k + 1) - 1: k for k in range(FLAKY)}

# (job id, job type name, payload, recipient)
_Job = tuple[str, str, dict[str, Any], str]


@dataclass
class Expected:
    """What the workload must produce; filled in as jobs are enqueued."""

    succeed_first_try: set[str] = field(default_factory=set)
    succeed_second_try: set[str] = field(default_factory=set)  # flaky recipients
    fail_permanently: set[str] = field(default_factory=set)  # raw envelopes
    rejected: set[str] = field(default_factory=set)  # job ids that must not exist
    duplicates_returned_existing: int = 0
    recipients: dict[str, str] = field(default_factory=dict)  # job id -> address

    @property
    def all_jobs(self) -> set[str]:
        return self.succeed_first_try | self.succeed_second_try | self.fail_permanently

    def expect(self, job_id: str, to: str, second_try: bool) -> None:
        (self.succeed_second_try if second_try else self.succeed_first_try).add(job_id)
        self.recipients[job_id] = to


def _payload(kind: int, to: str, n: int) -> dict[str, Any]:
    """A valid payload for each of the four email types."""
    name = f"User {n}"
    if kind == 0:
        return {
            "to": to,
            "name": name,
            "inviter_name": "Grace",
            "org_name": "Analytical Engines Ltd",
            "accept_url": f"https://app.example.com/invites/{n}",
        }
    if kind == 1:
        return {"to": to, "name": name, "reset_url": f"https://app.example.com/reset/{n}"}
    if kind == 2:
        return {"to": to, "name": name, "verify_url": f"https://app.example.com/verify/{n}"}
    return {"to": to, "name": name, "app_name": "jobkit demo"}


def _type_name(n: int) -> str:
    """The email type of job n: the four types in turn (the kinds of `_payload`)."""
    from jobkit_apps.email import ALL

    return ALL[n % 4].name


def _job(run: str, n: int) -> _Job:
    to = f"user-{run}-{n}@example.com"
    return f"demo-{run}-{n}", _type_name(n), _payload(n % 4, to, n), to


def _with_flaky(run: str, n: int) -> list[tuple[_Job, bool]]:
    """Valid job n, then a flaky one if one is due after it; each with whether it succeeds on
    its second try only."""
    jobs = [(_job(run, n), False)]
    if n in _FLAKY_AFTER:
        k = _FLAKY_AFTER[n]
        to = f"flaky-{run}-{k}@example.com"
        jobs.append(((f"demo-{run}-flaky-{k}", _type_name(k), _payload(k % 4, to, k), to), True))
    return jobs


def enqueue_workload(jobkit: Jobkit, queue_url: str, run: str) -> tuple[Expected, list[str]]:
    """Enqueue everything; returns what must happen and notes on the enqueue side."""
    expected = Expected()
    notes: list[str] = []
    _enqueue_batch(jobkit, run, expected, notes)
    _enqueue_one_by_one(jobkit, run, expected)
    _enqueue_invalid(jobkit, run, expected, notes)
    _send_raw_envelopes(queue_url, run, expected)
    return expected, notes


def _batch_requests(run: str, expected: Expected) -> list[EnqueueRequest]:
    """(a) valid jobs with repeats inside the batch, and (b) invalid input in the same batch."""
    from jobkit.client import EnqueueRequest

    requests = []
    for n in range(BATCHED):
        for (job_id, type_name, payload, to), second_try in _with_flaky(run, n):
            requests.append(EnqueueRequest(type_name, payload, job_id))
            expected.expect(job_id, to, second_try)
    for n in range(DUPLICATES // 2):
        job_id, type_name, payload, _ = _job(run, n)
        requests.append(EnqueueRequest(type_name, payload, job_id))
    for n, address in enumerate(INVALID_ADDRESSES[:REJECTED_BATCHED]):
        job_id = f"demo-{run}-rejected-batch-{n}"
        requests.append(EnqueueRequest(_type_name(n), _payload(n % 4, address, n), job_id))
        expected.rejected.add(job_id)
    return requests


def _enqueue_batch(jobkit: Jobkit, run: str, expected: Expected, notes: list[str]) -> None:
    """One enqueue_many: the invalid requests are rejected alone, the rest goes through."""
    result = jobkit.enqueue_many(_batch_requests(run, expected))
    created = {j.id for j in result.created}
    missing = expected.all_jobs - created
    if missing:
        notes.append(f"enqueue_many did not create {len(missing)} valid jobs")
    expected.duplicates_returned_existing += sum(
        1 for o in result.outcomes if o.ok and not o.created
    )
    rejected_in_batch = [o for o in result.failed if o.job_id in expected.rejected]
    if len(rejected_in_batch) != REJECTED_BATCHED:
        notes.append(f"enqueue_many rejected {len(rejected_in_batch)}, not {REJECTED_BATCHED}")


def _enqueue_one_by_one(jobkit: Jobkit, run: str, expected: Expected) -> None:
    """The other valid jobs through enqueue, then some of them again."""
    for n in range(BATCHED, VALID_JOBS):
        for (job_id, type_name, payload, to), second_try in _with_flaky(run, n):
            jobkit.enqueue(type_name, payload, job_id=job_id)
            expected.expect(job_id, to, second_try)
    for n in range(BATCHED, BATCHED + DUPLICATES // 2):
        job_id, type_name, payload, _ = _job(run, n)
        again = jobkit.enqueue(type_name, payload, job_id=job_id)
        if again.id == job_id:
            expected.duplicates_returned_existing += 1


def _enqueue_invalid(jobkit: Jobkit, run: str, expected: Expected, notes: list[str]) -> None:
    """(b) every invalid address through enqueue: each must be rejected."""
    from jobkit.errors import JobValidationError

    for n, address in enumerate(INVALID_ADDRESSES):
        job_id = f"demo-{run}-rejected-{n}"
        expected.rejected.add(job_id)
        try:
            jobkit.enqueue(_type_name(n), _payload(n % 4, address, n), job_id=job_id)
        except JobValidationError:
            continue
        notes.append(f"enqueue accepted an invalid address ({job_id})")


def _send_raw_envelopes(queue_url: str, run: str, expected: Expected) -> None:
    """(b) raw envelopes, as a producer in another language would send them: not validated."""
    sqs = client("sqs", os.environ["AWS_ENDPOINT_URL"])
    for n in range(RAW_INVALID):
        job_id = f"demo-{run}-raw-{n}"
        envelope = {
            "v": 1,
            "id": job_id,
            "type": _type_name(n),
            "payload": _payload(n % 4, INVALID_ADDRESSES[n], n),
            "enqueued_at": datetime.now(UTC).isoformat(),
        }
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
        expected.fail_permanently.add(job_id)


def checks(
    stack: LocalStack,
    jobkit: Jobkit,
    expected: Expected,
    jobs: dict[str, Job],
    sent: Counter[str],
) -> list[tuple[str, Any, Any]]:
    """(what, expected, actual) for the email part, against the job log, moto's SES and the
    DLQ."""

    def count(ids: set[str], state: str, attempts: int | None = None) -> int:
        return sum(
            1
            for i in ids
            if i in jobs
            and jobs[i].state.value == state
            and (attempts is None or jobs[i].attempts == attempts)
        )

    def mailed_once(ids: set[str]) -> int:
        return sum(1 for i in ids if sent[expected.recipients[i].lower()] == 1)

    rejected_present = sum(1 for i in expected.rejected if jobkit.get_job(i) is not None)
    rejected_mailed = sum(sent[a.lower()] for a in INVALID_ADDRESSES)
    proxy = stack.proxy
    throttled = sum(len(calls) for calls in proxy.stats.throttled_calls.values()) if proxy else 0
    dlq_url = stack.deployment.dead_letter_queues().get("email", "")
    dlq_reasons = _dead_letter_reasons(stack, dlq_url) if dlq_url else {}
    first, second, raw = (
        expected.succeed_first_try,
        expected.succeed_second_try,
        expected.fail_permanently,
    )
    return [
        ("valid jobs succeeded on attempt 1", len(first), count(first, "succeeded", 1)),
        ("  ... each sent exactly one email", len(first), mailed_once(first)),
        ("duplicate enqueues returned the existing job", DUPLICATES,
         expected.duplicates_returned_existing),
        ("rejected at enqueue (validation error)", len(INVALID_ADDRESSES) + REJECTED_BATCHED,
         len(expected.rejected) - rejected_present),
        ("  ... nothing written, nothing sent", 0, rejected_present + rejected_mailed),
        ("raw invalid envelopes failed permanently", len(raw), count(raw, "failed", 1)),
        ("  ... in the DLQ with the reason", len(raw),
         sum(1 for i in raw if "invalid payload" in dlq_reasons.get(i, ""))),
        ("flaky recipients succeeded on attempt 2", len(second), count(second, "succeeded", 2)),
        ("  ... throttled SES calls (proxy)", len(second), throttled),
        ("  ... each sent exactly one email", len(second), mailed_once(second)),
    ]  # fmt: skip


def _dead_letter_reasons(stack: LocalStack, dlq_url: str) -> dict[str, str]:
    """Job id -> the `jobkit-reason` the worker attached, peeking at the DLQ (not consuming)."""
    sqs = client("sqs", stack.endpoint_url)
    reasons: dict[str, str] = {}
    handles = []
    for _ in range(10):
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            job_id = attributes.get("jobkit-job-id", {}).get("StringValue", "")
            reasons[job_id] = attributes.get("jobkit-reason", {}).get("StringValue", "")
            handles.append(message["ReceiptHandle"])
    for start in range(0, len(handles), 10):  # make them visible again: only a peek
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )
    return reasons
