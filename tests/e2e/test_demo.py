"""`make demo`'s workload, end to end: 238 enqueue attempts, checked job by job."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from jobkit import aws
from jobkit_tools.local import LocalStack
from jobkit_tools.local.demo import run_demo
from jobkit_tools.local.dev import DEMO_SCHEDULE_WINDOW_S

from .conftest import ROOT

pytestmark = pytest.mark.e2e


def test_the_demo_workload_ends_as_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the local stack from template.yaml with SES fault injection, as `jobkit dev --demo`
    output = io.StringIO()
    console = Console(file=output, width=120)
    with LocalStack(
        ROOT / "template.yaml",
        ses_fault_injection=True,
        log_dir=tmp_path / "logs",
        schedule_window=DEMO_SCHEDULE_WINDOW_S,
    ) as stack:
        for key, value in stack.producer_env().items():  # run_demo sets them: restore after
            monkeypatch.setenv(key, value)
        # When the demo runs its workload
        code = run_demo(stack, console, threading.Event(), timeout=180)
    aws.reset_clients()

    # Then every job ended in the state it should, and the summary says so
    assert code == 0, output.getvalue()
    assert "demo passed" in output.getvalue()
