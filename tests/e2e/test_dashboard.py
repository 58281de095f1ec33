"""`jobkit dashboard` in headless Chromium on the local stack, used as an operator would.

One stack, one `jobkit dashboard` process (started in the stack's project folder, where it
finds the stack as the CLI does) and one browser for the module. A workload of succeeded,
retried, failed (dead-lettered) and scheduled jobs runs first; each test checks a page against
the job log and performs its actions through the page. Waits are for the event itself
(Playwright's `expect` polls the page, `wait_until` the job log), never a fixed sleep.
Chromium is Debian's (/usr/bin/chromium: `.ci/run` installs it), never a downloaded build.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobkit import aws
from jobkit.client import Jobkit
from jobkit.models import Job
from jobkit.settings import Settings
from jobkit_tools.local import LocalStack
from jobkit_tools.local.stack import client

from .conftest import wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# One stack and browser for the module: under xdist, its tests stay on one worker
# (`make test` runs with --dist loadgroup); each test holds whatever order they run in.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("dashboard")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000  # generous: the machine may be busy
expect.set_options(timeout=WAIT_MS)
SENDER = "no-reply@example.com"  # template.yaml EmailFromAddress


def invite(to: str) -> dict[str, Any]:
    return {
        "to": to,
        "name": "Ada",
        "inviter_name": "Grace",
        "org_name": "Engines",
        "accept_url": "https://app.example.com/i/1",
    }


def state_of(jobkit: Jobkit, job_id: str) -> str | None:
    job = jobkit.get_job(job_id)
    return job.state.value if job else None


def at_least(locator: Any, least: int) -> int:
    """The number a self-refreshing page shows, once it is at least `least`."""

    def shown() -> int | None:
        text = locator.inner_text().strip()
        return int(text) if text.isdigit() and int(text) >= least else None

    found: int = wait_until(shown, WAIT_MS / 1000, 0.5, f"{locator} to reach {least}")
    return found


def settled(jobkit: Jobkit, job_id: str, state: str, timeout: float = 60) -> Job:
    def reached() -> Job | None:
        job = jobkit.get_job(job_id)
        return job if job is not None and job.state.value == state else None

    job: Job = wait_until(reached, timeout, 0.3, f"job {job_id} to be {state}")
    return job


@pytest.fixture
def jobkit(producer: Jobkit) -> Jobkit:
    return producer


@dataclass(frozen=True)
class Workload:
    succeeded: list[str]
    retried: str
    scheduled: list[str]
    dead: dict[str, str]  # job type -> job id


@pytest.fixture(scope="module")
def workload(jobkit_stack: LocalStack) -> Iterator[Workload]:
    """Four jobs that succeed, one retried then succeeding (its first SES call throttled),
    two scheduled ten minutes ahead, two dead-lettered (envelopes another producer sent with
    an address that does not validate): all settled before the first page is opened."""
    import jobkit_apps.email  # noqa: F401  (declares the email job types)

    with pytest.MonkeyPatch.context() as patch:
        for key, value in jobkit_stack.producer_env().items():
            patch.setenv(key, value)
        aws.reset_clients()
        jobkit = Jobkit(Settings())
        work = Workload(
            succeeded=[f"ok-{n}" for n in range(4)],
            retried="flaky-0",
            scheduled=["later-0", "later-1"],
            dead={"email.send_welcome": "dead-welcome", "email.send_invite": "dead-invite"},
        )
        for job_id in work.succeeded:
            jobkit.enqueue("email.send_invite", invite(f"{job_id}@example.com"), job_id=job_id)
        jobkit.enqueue("email.send_invite", invite("flaky-ops@example.com"), job_id=work.retried)
        for job_id in work.scheduled:
            jobkit.enqueue("email.send_invite", invite("l@example.com"), job_id=job_id, delay=600)
        sqs = client("sqs", jobkit_stack.endpoint_url)
        for job_type, job_id in work.dead.items():
            envelope = {"v": 1, "id": job_id, "type": job_type, "payload": invite("not-an-address")}
            envelope["enqueued_at"] = datetime.now(UTC).isoformat()
            queue_url = jobkit_stack.deployment.outputs["EmailQueueUrl"]
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
        for job_id in [*work.succeeded, work.retried]:
            settled(jobkit, job_id, "succeeded")
        for job_id in work.dead.values():
            settled(jobkit, job_id, "failed")
        dlq = jobkit_stack.deployment.dead_letter_queues()["email"]
        wait_until(lambda: jobkit_stack.queue_depth(dlq) == 2, 60, what="two dead letters")
    aws.reset_clients()
    yield work


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[str]
    output: list[str]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_dashboard(stack: LocalStack, *options: str) -> Dashboard:
    """`jobkit dashboard --port 0` in the stack's project folder; its URL once it listens."""
    assert stack.state_file is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBKIT_", "AWS_ENDPOINT_URL"))}
    command = [str(Path(sys.executable).parent / "jobkit"), "dashboard", "--port", "0", *options]
    process = subprocess.Popen(
        command,
        cwd=stack.state_file.parent.parent,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=read, daemon=True).start()

    def url() -> str | None:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", "".join(output))
        if process.poll() is not None:
            pytest.fail(f"jobkit dashboard exited: {''.join(output)}")
        return found.group(1) if found else None

    return Dashboard(wait_until(url, 60, what="the dashboard's URL"), process, output)


@pytest.fixture(scope="module")
def dashboard(jobkit_stack: LocalStack, workload: Workload) -> Iterator[Dashboard]:
    running = start_dashboard(jobkit_stack)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    context = browser.new_context(base_url=dashboard.url)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def test_overview_shows_the_queues_the_counts_and_the_activity(
    page: Any, jobkit: Jobkit, workload: Workload
) -> None:
    # When the overview is opened
    page.goto("/")
    # Then the email queue's row has what the admin API says: two dead letters, running
    (email,) = jobkit.queue_overview(["email"])  # other test modules may declare more types
    row = page.locator('tr[data-queue="email"]')
    expect(row.locator('[data-field="dead_letters"]')).to_have_text(str(email.dead_letters))
    expect(row.locator('[data-field="worker"]')).to_have_text("running")
    # Then the job counts per state are the job log's (the workload's at least)
    counts = jobkit.state_counts()
    for state in ("scheduled", "failed", "retrying", "cancelled"):
        shown = page.locator(f'[data-state="{state}"] .value')
        expect(shown).to_have_text(str(getattr(counts, state)))
    assert counts.failed >= len(workload.dead) and counts.scheduled >= 1
    # Then the last hour's chart counts the workload's outcomes once the workers' metrics
    # have reached CloudWatch (the page refreshes itself until they have): its 5 successes
    # (one after a retry) and 2 failures, and more if other tests ran first
    hour = page.locator('[data-chart="0"]')
    assert at_least(hour.locator('[data-total="succeeded"]'), 5) >= 5
    assert at_least(hour.locator('[data-total="retried"]'), 1) >= 1
    assert at_least(hour.locator('[data-total="failed"]'), 2) >= 2


def test_jobs_are_listed_filtered_and_paged_and_cancelled_in_bulk(
    page: Any, jobkit: Jobkit, workload: Workload
) -> None:
    # Given 55 more scheduled jobs
    from jobkit.client import EnqueueRequest

    requests = [
        EnqueueRequest(
            "email.send_invite", invite("p@example.com"), job_id=f"page-{n:02}", delay=900
        )
        for n in range(55)
    ]
    assert not jobkit.enqueue_many(requests).failed
    # When the jobs page is filtered on failed jobs through its form
    page.goto("/jobs")
    page.select_option('select[name="state"]', "failed")
    page.click("text=Filter")
    # Then it lists the failed jobs of the job log, the dead-lettered ones among them
    rows = page.locator("#jobs tbody tr")
    expect(rows.first).to_be_visible()
    shown = set(rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)"))
    assert shown == {job.id for job in jobkit.find_jobs("failed").jobs}
    assert workload.dead["email.send_welcome"] in shown
    # When the scheduled jobs whose id starts with "page-" are listed, Then 50 come first and
    # "older" shows the other 5, none twice: the job log's 55
    page.goto("/jobs?state=scheduled&id_prefix=page-")
    expect(rows).to_have_count(50)
    first = rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    page.click("#next-page")
    expect(rows).to_have_count(5)
    second = rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert sorted(first + second) == [f"page-{n:02}" for n in range(55)]
    # When every job matching is cancelled: the confirmation says how many first
    page.goto("/jobs?state=scheduled&id_prefix=page-")
    page.click("text=Cancel every job matching")
    expect(page.locator("h1")).to_have_text("Cancel 55 jobs?")
    assert state_of(jobkit, "page-00") == "scheduled"
    page.click("#confirm")
    # Then all 55 are cancelled
    expect(page.locator(".flash.done")).to_contain_text("55 cancelled, 0 refused")
    assert {state_of(jobkit, f"page-{n:02}") for n in range(55)} == {"cancelled"}


def test_a_failed_job_is_retried_from_its_page_and_succeeds(
    page: Any, jobkit: Jobkit, jobkit_stack: LocalStack
) -> None:
    # Given a job that failed for good because SES did not know the sender, then the sender
    # verified (what an operator would fix before retrying)
    ses = client("sesv2", jobkit_stack.endpoint_url)
    ses.delete_email_identity(EmailIdentity=SENDER)
    try:
        payload = {"to": "fix@example.com", "verify_url": "https://app.example.com/v/1"}
        jobkit.enqueue("email.send_verification", payload, job_id="fix-me")
        settled(jobkit, "fix-me", "failed")
    finally:
        ses.create_email_identity(EmailIdentity=SENDER)
    # When its page is opened, Then it shows the failure
    page.goto("/job?id=fix-me")
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator("#job-error")).to_contain_text("not verified")
    expect(page.locator("#job-payload")).to_contain_text("f***@e***.com")
    # When Retry is clicked, Then the page follows the job until it has succeeded
    page.click("#retry")
    expect(page.locator(".flash.done")).to_contain_text("fix-me retried")
    expect(page.locator("#job-state")).to_have_text("succeeded")
    assert state_of(jobkit, "fix-me") == "succeeded"
    # Then its log link shows the worker's lines about it, the failure and the success
    page.click("#log-link")
    messages = page.locator("#log-lines tbody tr")
    expect(messages.filter(has_text="job succeeded")).to_have_count(1)
    expect(messages.filter(has_text="job failed")).to_have_count(1)


def test_a_scheduled_job_is_cancelled_from_its_page(page: Any, jobkit: Jobkit) -> None:
    # When a scheduled job's page is opened, Then it says how it waits and offers to cancel
    page.goto("/job?id=later-0")
    expect(page.locator("#job-state")).to_have_text("scheduled")
    expect(page.locator("#timeline")).to_contain_text("due")
    # When Cancel is clicked, Then the job is cancelled
    page.click("#cancel")
    expect(page.locator("#job-state")).to_have_text("cancelled")
    assert state_of(jobkit, "later-0") == "cancelled"


def test_schedules_show_recurring_runs_and_one_time_schedules(page: Any, jobkit: Jobkit) -> None:
    # Given a recurring schedule every day at 07:00 in New York, and a job due in an hour
    made = jobkit.schedule(
        "daily-digest",
        "0 7 * * ? *",
        "email.send_welcome",
        {"to": "digest@example.com"},
        timezone="America/New_York",
    )
    jobkit.enqueue("email.send_invite", invite("h@example.com"), job_id="in-an-hour", delay=3600)
    # When the schedules page is opened, Then it shows the schedule, its next three runs (the
    # first the one Scheduler has) and the one-time schedule waiting
    page.goto("/schedules")
    row = page.locator('tr[data-schedule="daily-digest"]')
    expect(row).to_contain_text("cron(0 7 * * ? *)")
    expect(row).to_contain_text(f"{made.next_run:%Y-%m-%d %H:%M:%S}")
    expect(row.locator("td:nth-child(6) > div")).to_have_count(3)
    expect(page.locator("#one-time b")).to_have_text(str(jobkit.count_one_time_schedules()))
    # When it is paused from the page, Then Scheduler has it paused
    row.locator("button", has_text="Pause").click()
    expect(page.locator(".flash.done")).to_contain_text("daily-digest is now disabled")
    assert jobkit.get_schedule("daily-digest").state == "DISABLED"


def test_a_paused_queue_holds_its_jobs_and_a_filtered_redrive_moves_one_letter(
    page: Any, jobkit: Jobkit, jobkit_stack: LocalStack, workload: Workload
) -> None:
    (poller,) = [p for p in jobkit_stack.pollers if p.function.logical_id == "EmailFunction"]
    # When the email queue is paused from the overview
    page.goto("/")
    page.locator('tr[data-queue="email"] button[name="pause"]').click()
    expect(page.locator(".flash.done")).to_contain_text("Queue email paused")
    wait_until(poller.paused.is_set, 30, what="the poller to hold off")
    row = page.locator('tr[data-queue="email"]')
    try:
        expect(row.locator('[data-field="worker"]')).to_have_text("paused")
        # When a job is enqueued, Then the overview shows it waiting (refreshing by itself)
        # and the job log has it queued
        jobkit.enqueue("email.send_invite", invite("held@example.com"), job_id="held-0")
        expect(row.locator('[data-field="waiting"]')).not_to_have_text("0")
        assert state_of(jobkit, "held-0") == "queued"
        # When the dead letters of type email.send_invite are redriven (a dry run first)
        invite_id, welcome_id = (
            workload.dead["email.send_invite"],
            workload.dead["email.send_welcome"],
        )
        page.goto("/dead-letters?queue=email")
        letters = page.locator("#dead-letters tbody tr")
        expect(letters.and_(page.locator(f'[data-job-id="{invite_id}"]'))).to_have_count(1)
        page.select_option('#redrive-filter select[name="job_type"]', "email.send_invite")
        page.click('#redrive-filter button[type="submit"]')
        expect(page.locator("h1")).to_have_text("Redrive 1 dead letter of email?")
        page.click("#confirm")
        # Then it is moved back and its job queued again (held by the pause); the welcome
        # one is left in the dead-letter queue
        expect(page.locator(".flash.done")).to_contain_text("1 moved back")
        assert state_of(jobkit, invite_id) == "queued"
        assert state_of(jobkit, welcome_id) == "failed"
        page.reload()
        expect(letters.and_(page.locator(f'[data-job-id="{invite_id}"]'))).to_have_count(0)
        expect(letters.and_(page.locator(f'[data-job-id="{welcome_id}"]'))).to_have_count(1)
    finally:
        # When the queue is resumed from the overview
        page.goto("/")
        page.locator('tr[data-queue="email"] button[name="resume"]').click()
    # Then the held job runs, and so does the redriven one (failing again: its address is
    # still invalid)
    expect(row.locator('[data-field="worker"]')).to_have_text("running")
    settled(jobkit, "held-0", "succeeded")
    assert settled(jobkit, workload.dead["email.send_invite"], "failed").attempts == 1


def test_a_read_only_dashboard_shows_everything_and_refuses_actions(
    browser: Any, jobkit_stack: LocalStack, dashboard: Dashboard, workload: Workload
) -> None:
    # Given a second dashboard, read-only
    read_only = start_dashboard(jobkit_stack, "--read-only")
    try:
        context = browser.new_context(base_url=read_only.url)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        # When its pages are opened, Then they show the stack and offer no action
        for path in ("/", "/jobs", "/job?id=later-1", "/dead-letters", "/schedules"):
            page.goto(path)
            expect(page.locator(".chip.read-only")).to_be_visible()
            expect(page.locator("form[method=post]")).to_have_count(0)
        expect(page.locator("h1")).to_have_text("Schedules")
        # When a cancel is posted anyway (as a form of the writable dashboard would)
        writable = browser.new_page()
        writable.goto(dashboard.url + "jobs")
        token = writable.locator('input[name="csrf"]').first.get_attribute("value")
        answer = page.request.post(
            read_only.url + "job/cancel", form={"id": "later-1", "csrf": token}
        )
        # Then it is refused with 403 and the job is still scheduled
        assert answer.status == 403
        assert "--read-only" in answer.text()
        page.goto("/job?id=later-1")
        expect(page.locator("#job-state")).to_have_text("scheduled")
        context.close()
    finally:
        read_only.stop()
