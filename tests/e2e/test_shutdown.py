"""Stopping the local stack: Ctrl-C finishes in-flight work and leaves no process behind.

`jobkit dev` runs here as a child process (the CLI's `run_dev`) on the probe template.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from jobkit_tools.local.stack import client

from .conftest import ROOT, wait_until, write_probe_project

pytestmark = pytest.mark.e2e

RUN_DEV = (
    "import sys; from pathlib import Path; from jobkit_tools.local import run_dev; "
    "sys.exit(run_dev(template=Path(sys.argv[1])))"
)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children in their own sessions included), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def start_dev(folder: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    template = write_probe_project(folder)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), str(ROOT / "layers" / "jobkit")]),
    }
    dev = subprocess.Popen(
        [sys.executable, "-c", RUN_DEV, str(template)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = folder / ".jobkit" / "local.json"
    wait_until(lambda: state_file.exists() or dev.poll() is not None, 60, what="local.json")
    assert dev.poll() is None, dev.communicate()[0]
    return dev, json.loads(state_file.read_text())


def send(state: dict[str, object], body: dict[str, object]) -> None:
    endpoint = str(state["endpoint_url"])
    outputs = state["outputs"]
    assert isinstance(outputs, dict)
    client("sqs", endpoint).send_message(
        QueueUrl=outputs["ProbeQueueUrl"], MessageBody=json.dumps(body)
    )


def test_ctrl_c_finishes_the_in_flight_batch_and_leaves_no_process(tmp_path: Path) -> None:
    # Given `jobkit dev` with a batch in flight (a handler that takes 1.5 s)
    dev, state = start_dev(tmp_path)
    probe_out = tmp_path / "probe.jsonl"
    message_id = f"slow-{uuid.uuid4().hex[:6]}"
    try:
        send(state, {"id": message_id, "action": "slow", "seconds": 1.5})
        wait_until(lambda: probe_out.exists() and message_id in probe_out.read_text(), 30)
        children = descendants(dev.pid)
        assert len(children) >= 2  # moto and a function container at least

        # When Ctrl-C reaches it
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=30)
    finally:
        if dev.poll() is None:
            dev.kill()

    # Then it exits 0 after the batch finished, and every process it started is gone
    assert dev.returncode == 0, output
    phases = [json.loads(line) for line in probe_out.read_text().splitlines()]
    assert any(p["phase"] == "end" and message_id in p["ids"] for p in phases)
    assert "stopped." in output
    wait_until(lambda: not any(alive(pid) for pid in children), 5, what="children to exit")
    # And the local stack no longer advertises itself
    assert not (tmp_path / ".jobkit" / "local.json").exists()


def test_a_killed_dev_process_takes_its_children_with_it(tmp_path: Path) -> None:
    # Given `jobkit dev` with a warm function container
    dev, state = start_dev(tmp_path)
    probe_out = tmp_path / "probe.jsonl"
    try:
        send(state, {"id": "warm-up", "action": "ok"})
        wait_until(lambda: probe_out.exists() and "warm-up" in probe_out.read_text(), 30)
        time.sleep(0.5)  # the answer is back: the container is idle
        children = descendants(dev.pid)
        assert len(children) >= 2

        # When the dev process is killed outright (no chance to clean up)
        dev.kill()
        dev.communicate(timeout=10)
    finally:
        if dev.poll() is None:
            dev.kill()

    # Then moto and the containers notice their closed pipes and exit on their own
    wait_until(lambda: not any(alive(pid) for pid in children), 10, what="orphans to exit")
