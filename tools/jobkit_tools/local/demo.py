"""The `jobkit dev --demo` workload (being written)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit_tools.local.dev import LocalStack


def run_demo(
    stack: LocalStack, console: Any, stopping: threading.Event, timeout: float = 120.0
) -> int:
    """Run the demo workload on a started stack; 0 when every job ended as expected."""
    console.print("[yellow]the demo workload is not written yet[/yellow]")
    return 1
