"""`jobkit dev`: the local stack (`local_stack.LocalStack`) until Ctrl-C, for the CLI: signals,
console, the `.jobkit/local.json` other terminals read, and the demo.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from jobkit_tools.local.local_stack import LocalStack
from jobkit_tools.local.scheduler import DEFAULT_WINDOW_S
from jobkit_tools.local.stack import LocalStackError, client

log = logging.getLogger("jobkit.local")

STATE_FILE = Path(".jobkit") / "local.json"
LOG_DIR = Path(".jobkit") / "logs"

DEMO_SCHEDULE_WINDOW_S = 5.0


def run_dev(
    demo: bool = False,
    parameter_overrides: dict[str, str] | None = None,
    *,
    template: Path = Path("template.yaml"),
    console_logs: bool | None = None,
    demo_timeout: float = 180.0,
) -> int:
    """`jobkit dev [--demo]`: run the local stack until Ctrl-C (or until the demo is done).

    Function logs go to the console, prefixed with the function, unless `console_logs` is
    False (the default for the demo, to keep its table readable): then to `.jobkit/logs/`.
    Returns the process exit code: 0 after a clean stop or a demo that went as expected.
    """
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(stderr=False)
    # Through the console, so the demo's live table and the runner's warnings share the screen.
    handler = RichHandler(console=console, show_path=False, log_time_format="%H:%M:%S")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    if console_logs is None:
        console_logs = not demo
    root = template.resolve().parent
    stopping = threading.Event()
    signals = _Signals(stopping)
    stack = LocalStack(
        template,
        parameter_overrides,
        ses_fault_injection=demo,
        log_dir=None if console_logs else root / LOG_DIR,
        state_file=root / STATE_FILE,
        # The demo waits for its cron schedule's next minute: fire it within 5 s, not 60.
        schedule_window=DEMO_SCHEDULE_WINDOW_S if demo else DEFAULT_WINDOW_S,
    )
    code = 0
    dashboard: Any = None  # the dashboard's server (`jobkit_tools.dashboard.serving`)
    with signals:
        try:
            console.print(f"[bold]jobkit dev[/bold]: deploying {template} to moto ...")
            stack.start()
            _print_summary(console, stack, console_logs, root)
            from jobkit_tools.dashboard.serving import start_local

            dashboard = start_local(stack)
            if dashboard is not None:
                console.print(f"dashboard: [bold]{dashboard.url}[/bold]", soft_wrap=True)
            if stopping.is_set():
                pass
            elif demo:
                from jobkit_tools.local.demo import run_demo

                code = run_demo(stack, console, stopping, timeout=demo_timeout)
            else:
                console.print("Ctrl-C to stop.")
                _watch(stack, console, stopping)
        except LocalStackError as error:
            console.print(f"[red]local stack failed:[/red] {error}")
            code = 1
        finally:
            console.print("stopping: waiting for in-flight batches (Ctrl-C again to kill) ...")
            if dashboard is not None:
                dashboard.stop()
            signals.on_second = stack.kill_functions  # run in a thread: stop() may hold locks
            stack.stop(graceful=not signals.hard)
            console.print("stopped.")
            log.removeHandler(handler)
    return code


class _Signals:
    """SIGINT/SIGTERM -> a stop event; a second one -> kill at once."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self.hard = False
        self.on_second: Any = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            self.hard = True
            if self.on_second is not None:
                threading.Thread(target=self.on_second, daemon=True).start()
        self.stopping.set()

    def __enter__(self) -> _Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _watch(stack: LocalStack, console: Any, stopping: threading.Event) -> None:
    """Until Ctrl-C, print what happened whenever it changes: jobs by state, emails SES sent,
    dead letters. Counting scans the local table: fine on moto, never done against AWS."""
    outputs = stack.deployment.outputs
    ddb = client("dynamodb", stack.endpoint_url)
    last = ""
    while not stopping.wait(2.0):
        states: dict[str, int] = {}
        pages = ddb.get_paginator("scan").paginate(
            TableName=outputs["JobsTableName"],
            ProjectionExpression="#s",
            ExpressionAttributeNames={"#s": "state"},
        )
        for page in pages:
            for item in page.get("Items", []):
                state = item["state"]["S"]
                states[state] = states.get(state, 0) + 1
        dead = sum(stack.queue_depth(url) for url in stack.deployment.dead_letter_queues().values())
        line = "  ".join(f"{k} {v}" for k, v in sorted(states.items())) or "no jobs yet"
        line = f"jobs: {line} | emails sent: {len(stack.sent_emails())} | dead letters: {dead}"
        if line != last:
            console.print(f"{time.strftime('%H:%M:%S')} {line}")
            last = line


def _print_summary(console: Any, stack: LocalStack, console_logs: bool, root: Path) -> None:
    deployment = stack.deployment
    lines = [f"moto at [bold]{deployment.endpoint_url}[/bold] (region us-east-1)"]
    lines += [f"  {key}: {value}" for key, value in deployment.outputs.items()]
    for poller in stack.pollers:
        m = poller.mapping
        queue = m.queue_arn.rsplit(":", 1)[-1]
        lines.append(
            f"  {poller.function.logical_id} <- {queue}: batch {m.batch_size},"
            f" window {m.batching_window:g} s, concurrency {poller.concurrency},"
            f" timeout {poller.function.timeout} s"
            + (", partial batch responses" if m.report_batch_item_failures else "")
        )
    lines += [
        f"  {lid}: created through its API ({name})" for lid, name in deployment.lifted.items()
    ]
    lines += [f"  {lid}: NOT emulated (moto skipped it)" for lid in deployment.skipped]
    lines += [
        f"  {api.api}: HTTP API at [bold]{api.url}[/bold] (SigV4: curl --aws-sigv4"
        ' "aws:amz:us-east-1:execute-api" --user testing:testing ...)'
        for api in stack.http_apis
    ]
    if stack.scheduler is not None:
        lines.append(
            f"  Scheduler schedules: fired locally, up to {stack.schedule_window:g} s late"
        )
    if stack.partners is not None:
        lines += [
            f"  partner {name} ({stack.partners.behaviour(name)}): {stack.partners.url(name)}"
            for name in stack.partners.names
        ]
    if not console_logs:
        lines.append(f"function logs: {root / LOG_DIR}/")
    lines.append(
        f"other terminals: `jobkit jobs`, `jobkit status <id>` find it via {root / STATE_FILE}"
    )
    for line in lines:
        console.print(line, soft_wrap=True)  # URLs and ARNs stay whole, to copy them
