"""`python -m jobkit_tools.dashboard.screenshots`: the README's pictures of the dashboard, and
how fast its pages answer.

It starts the local stack from template.yaml in a temporary folder, runs a workload through it
(`--jobs` jobs: most succeed, some after a retry, some are scheduled, some fail into the DLQ,
plus a recurring schedule), serves the dashboard, times each page (median and slowest of a few
GETs over HTTP), and saves a PNG of each page to `--out` with Debian's chromium (Playwright,
a dev dependency). `--jobs 2000` is the measurement the README reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobkit.client import EnqueueRequest, Jobkit
from jobkit_tools.local.local_stack import LocalStack
from jobkit_tools.local.stack import client

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # fmt: skip
PAGES = {
    "overview": "/",
    "jobs": "/jobs",
    "jobs-failed": "/jobs?state=failed",
    "job": "/job?id=shot-failed-0",
    "job-logs": "/job/logs?id=shot-flaky-0",
    "dead-letters": "/dead-letters?queue=email",
    "schedules": "/schedules",
}


def invite(to: str, n: int) -> dict[str, Any]:
    return {"to": to, "name": f"User {n}", "inviter_name": "Grace", "org_name": "Engines",
            "accept_url": f"https://app.example.com/invites/{n}"}  # fmt: skip


def run_workload(jobkit: Jobkit, stack: LocalStack, jobs: int) -> None:
    """Enqueue `jobs` jobs and wait until the queue has worked them off."""
    scheduled = max(jobs // 20, 2)
    ok = jobs - scheduled - 6
    requests = [
        EnqueueRequest("email.send_invite", invite(f"user-{n}@example.com", n), job_id=f"shot-{n}")
        for n in range(ok)
    ]
    requests += [
        EnqueueRequest("email.send_invite", invite(f"flaky-{n}@example.com", n),
                       job_id=f"shot-flaky-{n}")
        for n in range(3)
    ]  # fmt: skip
    requests += [
        EnqueueRequest("email.send_invite", invite("later@example.com", n),
                       job_id=f"shot-later-{n}", delay=600 + 60 * n)
        for n in range(scheduled)
    ]  # fmt: skip
    for first in range(0, len(requests), 500):
        jobkit.enqueue_many(requests[first : first + 500])
    sqs = client("sqs", stack.endpoint_url)
    queue_url = stack.deployment.outputs["EmailQueueUrl"]
    for n in range(3):  # another producer's envelopes, with an address that does not validate
        envelope = {"v": 1, "id": f"shot-failed-{n}", "type": "email.send_welcome",
                    "payload": {"to": "not-an-address"},
                    "enqueued_at": datetime.now(UTC).isoformat()}  # fmt: skip
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
    jobkit.schedule("daily-digest", "0 7 * * ? *", "email.send_welcome", {"to": "d@example.com"},
                    timezone="America/New_York")  # fmt: skip
    jobkit.schedule("hourly-sync", "rate(1 hour)", "email.send_welcome", {"to": "s@example.com"})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        (email,) = [q for q in jobkit.queue_overview() if q.queue == "email"]
        if email.waiting + email.in_flight == 0 and (email.dead_letters or 0) >= 3:
            return
        time.sleep(2)
    raise TimeoutError("the workload did not finish in 10 minutes")


def timings(base: str, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """(median, slowest) seconds of each page, over `rounds` GETs."""
    found = {}
    for name, path in PAGES.items():
        seconds = []
        for _ in range(rounds):
            started = time.perf_counter()
            with urllib.request.urlopen(base + path.lstrip("/"), timeout=60) as answer:
                answer.read()
            seconds.append(time.perf_counter() - started)
        found[name] = (statistics.median(seconds), max(seconds))
    return found


def screenshots(base: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, base_url=base)
        for name, path in PAGES.items():
            page.goto(path)
            page.screenshot(path=str(out / f"{name}.png"), full_page=name != "jobs")
        page.goto("/jobs?state=failed")
        page.click("text=Retry every failed job matching")
        page.screenshot(path=str(out / "confirm-retry.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=120, help="How many jobs the workload has.")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard"))
    parser.add_argument("--no-pictures", action="store_true", help="Only time the pages.")
    options = parser.parse_args()
    template = Path("template.yaml").resolve()
    from jobkit_tools.dashboard.serving import start_local
    from jobkit_tools.discover import settings_from_outputs

    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder) / ".jobkit" / "logs"
        with LocalStack(template, ses_fault_injection=True, log_dir=logs) as stack:
            dashboard = start_local(stack)
            if dashboard is None:
                raise SystemExit("the dashboard could not start (see the warning above)")
            jobkit = Jobkit(settings_from_outputs(stack.deployment.outputs))
            started = time.monotonic()
            run_workload(jobkit, stack, options.jobs)
            print(f"workload of {options.jobs} jobs done in {time.monotonic() - started:.0f} s")
            wait_for_metrics(jobkit, options.jobs // 2)
            for name, (median, slowest) in timings(dashboard.url).items():
                print(
                    f"{name:>14}: median {median * 1000:6.0f} ms, slowest {slowest * 1000:6.0f} ms"
                )
            if not options.no_pictures:
                screenshots(dashboard.url, options.out)
                print(f"pictures in {options.out}/")
            dashboard.stop()


def wait_for_metrics(jobkit: Jobkit, succeeded: int) -> None:
    """Until the workers' EMF lines have reached CloudWatch (the chart)."""
    deadline = time.monotonic() + 60
    while jobkit.job_activity().last_hour.total("succeeded") < succeeded:
        if time.monotonic() > deadline:
            raise TimeoutError("the job metrics did not reach CloudWatch in a minute")
        time.sleep(1)


if __name__ == "__main__":
    main()
