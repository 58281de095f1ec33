"""The dashboard's server over real HTTP on 127.0.0.1 (waitress in a thread) on moto's
`mock_aws` stack: what each page shows, and what it refuses (CSRF, other sites, read-only,
other hosts), escaping, and error pages. The browser tests are tests/e2e/test_dashboard.py."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from jobkit import JobState, PermanentError
from jobkit.errors import ServiceError
from jobkit.jobs import JobType
from jobkit_tools.dashboard.app import create_app
from jobkit_tools.dashboard.server import Options, StackUnavailableError, StackView
from jobkit_tools.dashboard.serving import start
from tests.conftest import Stack, scheduling_client

from .test_core_support import ECHO, RECIPIENT, Runs, deliver, make_worker, payload, receive_now


@dataclass
class Answer:
    status: int
    text: str
    url: str


class Browser:
    """urllib with cookies (flash messages), keeping error answers instead of raising."""

    def __init__(self, base: str) -> None:
        self.base = base
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(cookies)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self._open(
            urllib.request.Request(self.base + path.lstrip("/"), headers=headers or {})
        )

    def post(
        self,
        path: str,
        fields: dict[str, str | list[str]],
        headers: dict[str, str] | None = None,
    ) -> Answer:
        body = urllib.parse.urlencode(fields, doseq=True).encode()
        request = urllib.request.Request(
            self.base + path.lstrip("/"), data=body, headers=headers or {}, method="POST"
        )
        return self._open(request)

    def _open(self, request: urllib.request.Request) -> Answer:
        try:
            with self.opener.open(request, timeout=30) as answer:
                return Answer(answer.status, answer.read().decode(), answer.url)
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode(), error.url or "")

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get("/jobs").text)
        assert found, "no form on the jobs page"
        return found.group(1)


Serve = Callable[..., Browser]


@pytest.fixture
def serve(stack: Stack, tmp_path: Path) -> Iterator[Serve]:
    """Start a dashboard on the stack (or on what `connect` returns) on a free port."""
    running = []

    def serve_one(connect: Callable[[], StackView] | None = None, **options: object) -> Browser:
        view = StackView(stack.client, "moto", local=True, log_dir=tmp_path)
        app = create_app(connect or (lambda: view), Options(**options))  # type: ignore[arg-type]
        running.append(start(app))
        return Browser(running[-1].url)

    yield serve_one
    for server in running:
        server.stop()


def fail_for_good(stack: Stack, job_id: str, why: str, job_type: JobType = ECHO) -> None:
    """A job that failed permanently: failed in the log, its dead letter in the DLQ."""
    runs = Runs([PermanentError(why)])
    stack.client.enqueue(job_type, payload(), job_id=job_id)
    deliver(stack, make_worker(stack, runs), receive_now(stack))


def test_the_pages_show_the_stack(stack: Stack, serve: Serve) -> None:
    # Given a failed job (with its dead letter) and a scheduled one
    fail_for_good(stack, "bad-1", "the partner said no")
    stack.client.enqueue(ECHO, payload(), job_id="later-1", delay=600)
    browser = serve()
    # When the overview is read, Then it lists the email queue with its dead letter, and the
    # job counts per state
    overview = browser.get("/")
    assert overview.status == 200
    assert 'data-queue="email"' in overview.text
    assert re.search(r'data-field="dead_letters">\s*<a[^>]*>1</a>', overview.text)
    assert re.search(r'data-state="failed"[^>]*>\s*<span class="value">1<', overview.text)
    assert re.search(r'data-state="scheduled"[^>]*>\s*<span class="value">1<', overview.text)
    # Then the failed job's page shows its error and masks the payload's address
    job = browser.get("/job?id=bad-1")
    assert job.status == 200
    assert "the partner said no" in job.text
    assert RECIPIENT not in job.text and "a***@e***.com" in job.text
    # Then the dead letters page shows it with its reason
    letters = browser.get("/dead-letters?queue=email")
    assert 'data-job-id="bad-1"' in letters.text and "the partner said no" in letters.text
    # Then the schedules page says the stack has no recurring schedule group
    assert "JOBKIT_RECURRING_GROUP" in browser.get("/schedules").text


def test_job_actions_need_the_csrf_token_and_the_same_origin(stack: Stack, serve: Serve) -> None:
    # Given a scheduled job and the dashboard
    stack.client.enqueue(ECHO, payload(), job_id="later-1", delay=600)
    browser = serve()
    token = browser.csrf()
    # When a cancel is posted without the token, with a wrong one, or from another site
    refused = [
        browser.post("/job/cancel", {"id": "later-1"}),
        browser.post("/job/cancel", {"id": "later-1", "csrf": "forged"}),
        browser.post(
            "/job/cancel",
            {"id": "later-1", "csrf": token},
            {"Origin": "https://evil.example"},
        ),
    ]
    # Then each is refused with 403 and the job is left as it was
    assert [answer.status for answer in refused] == [403, 403, 403]
    assert "CSRF" in refused[0].text and "another site" in refused[2].text
    assert stack.client.get_job("later-1").state == JobState.SCHEDULED  # type: ignore[union-attr]
    # When it is posted from the dashboard's own page, Then the job is cancelled and the page
    # it goes back to says so
    done = browser.post("/job/cancel", {"id": "later-1", "csrf": token})
    assert done.status == 200 and "later-1 cancelled" in done.text
    assert stack.client.get_job("later-1").state == JobState.CANCELLED  # type: ignore[union-attr]


def test_read_only_hides_every_action_and_refuses_them(stack: Stack, serve: Serve) -> None:
    # Given a failed job, a scheduled one, and a read-only dashboard
    fail_for_good(stack, "bad-1", "no")
    stack.client.enqueue(ECHO, payload(), job_id="later-1", delay=600)
    browser = serve(read_only=True)
    # When its pages are read, Then none has a form that posts
    for path in ("/", "/jobs", "/job?id=bad-1", "/job?id=later-1", "/dead-letters", "/schedules"):
        page = browser.get(path)
        assert page.status == 200, path
        assert 'method="post"' not in page.text, path
        assert "read-only" in page.text
    # When actions are posted anyway
    for path, fields in (
        ("/job/retry", {"id": "bad-1"}),
        ("/job/cancel", {"id": "later-1"}),
        ("/queues/email/pause", {}),
        ("/dead-letters/email/purge", {"confirmed": "yes"}),
    ):
        answer = browser.post(path, fields)
        # Then each is refused with 403, saying why, and nothing changes
        assert answer.status == 403 and "--read-only" in answer.text, path
    assert stack.client.get_job("bad-1").state == JobState.FAILED  # type: ignore[union-attr]
    assert stack.client.get_job("later-1").state == JobState.SCHEDULED  # type: ignore[union-attr]
    assert stack.client.queue_overview(["email"])[0].dead_letters == 1


def test_another_host_name_is_refused(serve: Serve) -> None:
    # Given the dashboard on 127.0.0.1
    browser = serve()
    # When a page is asked for under another name (a DNS-rebinding page would), Then 400
    assert browser.get("/", {"Host": "evil.example:8765"}).status == 400
    # And under its own names it answers
    assert browser.get("/", {"Host": "localhost:8765"}).status == 200


def test_everything_shown_is_escaped(stack: Stack, serve: Serve) -> None:
    # Given a job whose id and error carry markup (ids may hold any visible ASCII)
    job_id = "x<script>alert(1)</script>"
    fail_for_good(stack, job_id, "<img src=x onerror=alert(2)>")
    browser = serve()
    # When the pages that show them are read
    pages = [
        browser.get("/jobs"),
        browser.get("/job?id=" + urllib.parse.quote(job_id)),
        browser.get("/dead-letters?queue=email"),
    ]
    # Then the markup is shown as text, never as markup
    for page in pages:
        assert page.status == 200
        assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in pages[1].text


def test_bulk_retry_confirms_how_many_then_retries_exactly_those(
    stack: Stack, serve: Serve
) -> None:
    # Given two failed jobs
    fail_for_good(stack, "bad-1", "no")
    fail_for_good(stack, "bad-2", "no")
    browser = serve()
    token = browser.csrf()
    # When "retry every failed job matching" is asked (queue email)
    confirm = browser.post(
        "/jobs/bulk?scope=matching", {"action": "retry", "queue": "email", "csrf": token}
    )
    # Then a confirmation says how many, and nothing is retried yet
    assert confirm.status == 200 and "Retry 2 jobs?" in confirm.text
    assert stack.client.get_job("bad-1").state == JobState.FAILED  # type: ignore[union-attr]
    # When it is confirmed, Then both are queued again
    ids = re.findall(r'name="id" value="([^"]+)"', confirm.text)
    done = browser.post(
        "/jobs/bulk", {"action": "retry", "confirmed": "yes", "id": ids, "csrf": token}
    )
    assert done.status == 200 and "2 retried, 0 refused" in done.text
    for job_id in ("bad-1", "bad-2"):
        assert stack.client.get_job(job_id).state == JobState.QUEUED  # type: ignore[union-attr]


def test_a_filtered_redrive_confirms_then_moves_only_the_matching(
    stack: Stack, serve: Serve
) -> None:
    # Given two dead letters with different reasons
    fail_for_good(stack, "bad-1", "partner timeout")
    fail_for_good(stack, "bad-2", "invalid address")
    browser = serve()
    token = browser.csrf()
    form = {"mode": "filter", "reason_contains": "timeout", "csrf": token}
    # When a redrive of those whose reason contains "timeout" is asked
    confirm = browser.post("/dead-letters/email/redrive", form)
    # Then the dry run says one would move, and none has
    assert "Redrive 1 dead letter of email?" in confirm.text
    assert stack.client.queue_overview(["email"])[0].dead_letters == 2
    # When it is confirmed, Then only that one moves back and its job is queued again
    done = browser.post("/dead-letters/email/redrive", {**form, "confirmed": "yes"})
    assert done.status == 200 and "1 moved back" in done.text
    assert stack.client.get_job("bad-1").state == JobState.QUEUED  # type: ignore[union-attr]
    assert stack.client.get_job("bad-2").state == JobState.FAILED  # type: ignore[union-attr]


def test_errors_are_plain_pages_never_tracebacks(stack: Stack, serve: Serve) -> None:
    # Given a dashboard whose stack cannot be found
    def gone() -> StackView:
        raise StackUnavailableError("no jobkit stack found: no local stack is running")

    lost = serve(connect=gone).get("/")
    # Then the page says so, with what to do, and 503
    assert lost.status == 503 and "no local stack is running" in lost.text
    assert "jobkit dev" in lost.text and "Traceback" not in lost.text
    # Given a client on a job log table that does not exist (an AWS error)
    broken = stack.client.settings.model_copy(update={"table": "no-such-table"})
    view = StackView(type(stack.client)(broken), "moto")
    answer = serve(connect=lambda: view).get("/job?id=bad-1")
    # Then the page names the AWS error plainly, with 502
    assert answer.status == 502 and "ResourceNotFoundException" in answer.text
    assert "Traceback" not in answer.text
    # And an unknown job, a bad id and a bad filter say what is wrong
    browser = serve()
    assert browser.get("/job?id=nope").status == 404
    assert browser.get("/job?id=" + urllib.parse.quote("a b")).status == 400
    bad_filter = browser.get("/jobs?created_after=yesterday")
    assert bad_filter.status == 200 and "is not a time" in bad_filter.text


def test_the_activity_chart_reads_the_job_metrics(stack: Stack, serve: Serve) -> None:
    # Given job metrics in CloudWatch as the workers' EMF lines become on AWS: two job types
    cloudwatch = boto3.client("cloudwatch")
    for job_type, succeeded in (("email.send_welcome", 3), ("email.send_invite", 4)):
        cloudwatch.put_metric_data(
            Namespace="jobkit",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [
                        {"Name": "job_type", "Value": job_type},
                        {"Name": "service", "Value": "email"},
                    ],
                    "Value": value,
                    "Unit": "Count",
                }
                for name, value in (("JobSucceeded", succeeded), ("JobFailed", 1))
            ],
        )
    # When the overview is read, Then both charts sum them over the job types
    page = serve().get("/").text
    assert page.count('data-total="succeeded">7<') == 2
    assert page.count('data-total="failed">2<') == 2
    assert page.count('data-total="retried">0<') == 2


def test_unreadable_metrics_leave_the_chart_unknown(stack: Stack, serve: Serve) -> None:
    # Given a client whose credentials may not read CloudWatch metrics
    class NoMetrics(type(stack.client)):  # type: ignore[misc]
        def job_activity(self, now: object = None) -> object:
            raise ServiceError(
                "AWS GetMetricData failed: AccessDenied: not authorized",
                operation="GetMetricData",
                code="AccessDenied",
            )

    view = StackView(NoMetrics(stack.client.settings), "moto")
    # When the overview is read, Then the counts are there and the chart says "unknown"
    page = serve(connect=lambda: view).get("/")
    assert page.status == 200 and 'data-queue="email"' in page.text
    assert "unknown: CloudWatch metrics could not be read" in page.text


def test_schedules_show_their_next_runs_and_pause_resume_delete(stack: Stack, serve: Serve) -> None:
    # Given a recurring schedule every day at 02:00 in Berlin, and a job due in a day (a
    # one-time schedule)
    scheduling_client(stack, "recurring", "recurring_group")
    jobkit = scheduling_client(stack, "delayed", "schedule_group").settings.model_copy(
        update={"recurring_group": "recurring"}
    )
    client = type(stack.client)(jobkit)
    client.schedule("nightly", "0 2 * * ? *", ECHO, payload(), timezone="Europe/Berlin")
    client.enqueue(ECHO, payload(), job_id="tomorrow", delay=86_400)
    browser = serve(connect=lambda: StackView(client, "moto"))
    # When the schedules page is read
    page = browser.get("/schedules").text
    # Then it shows the schedule with its next three runs (01:00 UTC in winter) and the one
    # waiting one-time schedule
    row = page.split('data-schedule="nightly"')[1].split("</tr>")[0]
    assert "cron(0 2 * * ? *)" in row and "Europe/Berlin" in row
    assert len(re.findall(r"\d{4}-\d\d-\d\d 0[01]:00:00", row)) == 3
    assert re.search(r'id="one-time"><b>1</b>', page)
    token = browser.csrf()
    # When it is paused from the page, Then Scheduler has it disabled, and resumed, enabled
    assert "now disabled" in browser.post("/schedules/nightly/pause", {"csrf": token}).text
    assert client.get_schedule("nightly").state == "DISABLED"
    assert "now enabled" in browser.post("/schedules/nightly/resume", {"csrf": token}).text
    assert client.get_schedule("nightly").state == "ENABLED"
    # When it is deleted: first a confirmation, then, confirmed, it is gone
    confirm = browser.post("/schedules/nightly/delete", {"csrf": token})
    assert "Delete the schedule nightly?" in confirm.text
    assert client.list_schedules()
    browser.post("/schedules/nightly/delete", {"csrf": token, "confirmed": "yes"})
    assert client.list_schedules() == []


def test_run_now_and_purge_from_their_forms(stack: Stack, serve: Serve) -> None:
    # Given a scheduled job, and a dead letter
    stack.client.enqueue(ECHO, payload(), job_id="later-1", delay=600)
    fail_for_good(stack, "bad-1", "no")
    browser = serve()
    token = browser.csrf()
    # When "Run now" is posted for the scheduled job, Then it is queued at once
    done = browser.post("/job/run-now", {"id": "later-1", "csrf": token})
    assert done.status == 200 and "later-1 released to run now" in done.text
    assert stack.client.get_job("later-1").state == JobState.QUEUED  # type: ignore[union-attr]
    # When a purge is asked, Then a confirmation says how many messages go, and none has
    confirm = browser.post("/dead-letters/email/purge", {"csrf": token})
    assert (
        "Purge the dead-letter queue of email?" in confirm.text
        and "about 1 message" in confirm.text
    )
    assert stack.client.queue_overview(["email"])[0].dead_letters == 1
    # When it is confirmed, Then the dead-letter queue is empty
    purged = browser.post("/dead-letters/email/purge", {"csrf": token, "confirmed": "yes"})
    assert purged.status == 200 and "purged" in purged.text
    assert stack.client.queue_overview(["email"])[0].dead_letters == 0


def test_expired_credentials_are_said_plainly(stack: Stack, serve: Serve) -> None:
    # Given a client whose AWS credentials have expired
    class Expired(type(stack.client)):  # type: ignore[misc]
        def get_job(self, job_id: str) -> object:
            raise ServiceError(
                "AWS GetItem failed: ExpiredTokenException: The security token has expired",
                operation="GetItem",
                code="ExpiredTokenException",
            )

    view = StackView(Expired(stack.client.settings), "stack jobkit-dev")
    # When a job's page is opened, Then it names the error and says to sign in again
    answer = serve(connect=lambda: view).get("/job?id=bad-1")
    assert answer.status == 502 and "ExpiredTokenException" in answer.text
    assert "credentials are missing or expired" in answer.text


def test_on_a_deployed_stack_a_job_links_to_its_workers_logs_in_insights(
    stack: Stack, serve: Serve
) -> None:
    # Given a deployed stack (no local log files) whose email queue a function reads
    from .test_queue_pause import mapping_of

    mapping_of(stack)
    stack.client.enqueue(ECHO, payload(), job_id="order:1")
    browser = serve(connect=lambda: StackView(stack.client, "stack jobkit-dev"))
    # When the job's page is opened
    page = browser.get("/job?id=order%3A1")
    # Then its log link is a Logs Insights query of that function's log group, in its region
    link = re.search(
        r'href="([^"]+)"[^>]*class="log-link">CloudWatch Logs Insights: email-worker<', page.text
    )
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    assert url.startswith(
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
    )
    assert "*2faws*2flambda*2femail-worker" in urllib.parse.unquote(url.replace("$", "%")).lower()
    # And there is no local log page
    assert browser.get("/job/logs?id=order%3A1").status == 404
