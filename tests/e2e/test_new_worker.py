"""A newcomer adds a worker the way the README says, and a job runs through it on the local
stack: `jobkit new worker NAME`, one block in template.yaml, nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobkit import aws
from jobkit.client import Jobkit
from jobkit.models import JobState
from jobkit.settings import Settings
from jobkit_tools.cli import app
from jobkit_tools.local import LocalStack
from jobkit_tools.scaffold import MARKER

from .conftest import ROOT, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this project (template, functions, layers), as a team's own would be."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "template.yaml", root / "template.yaml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("functions", "layers"):
        shutil.copytree(ROOT / folder, root / folder, ignore=ignore)
    return root


@pytest.fixture(scope="module")
def scaffolded(project: Path) -> Path:
    # Given a project, when `jobkit new worker webhooks` runs in it
    result = CliRunner().invoke(app, ["new", "worker", "webhooks", "--root", str(project)])
    assert result.exit_code == 0, result.output
    return project


def test_the_worker_is_one_block_and_a_folder(scaffolded: Path) -> None:
    # Then the template gains one block of at most 15 lines, above the marker, and nothing else
    before = (ROOT / "template.yaml").read_text().splitlines()
    after = (scaffolded / "template.yaml").read_text().splitlines()
    added = [line for line in after if line not in before or line.strip() == ""]
    start = after.index("  Webhooks:")
    block = after[start : after.index(MARKER)]
    assert 0 < len([line for line in block if line.strip()]) <= 15
    assert len(after) - len(before) == len(block)
    assert {line for line in added if line.strip()} <= set(block)
    # And the worker's folder holds its handler, job types, processors, plus a first test
    folder = scaffolded / "functions" / "webhooks"
    assert {p.name for p in folder.iterdir()} == {
        "app.py",
        "requirements.txt",
        "webhooks_jobs.py",
        "webhooks_worker.py",
    }
    assert (scaffolded / "tests" / "workers" / "test_webhooks.py").is_file()


def test_the_same_name_twice_or_a_bad_name_is_refused(scaffolded: Path) -> None:
    # When the worker is added again, or a name that cannot name a queue is asked for
    for name in ("webhooks", "Web-Hooks", "1st"):
        result = CliRunner().invoke(app, ["new", "worker", name, "--root", str(scaffolded)])
        # Then it says why, on one line, exit code 2, and nothing changes
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert (scaffolded / "template.yaml").read_text().count("  Webhooks:") == 1


def test_the_scaffolded_test_passes(scaffolded: Path) -> None:
    # When the worker's first test runs (a pytest of its own, in the project's folder)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/workers"],
        cwd=scaffolded,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    # Then it passes
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


@pytest.fixture(scope="module")
def stack(scaffolded: Path) -> Iterator[LocalStack]:
    with LocalStack(scaffolded / "template.yaml", log_dir=scaffolded / "logs") as stack:
        yield stack


def test_a_job_runs_through_the_new_worker_on_the_local_stack(
    stack: LocalStack, scaffolded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the stack deployed from the project's template, with the new worker in it
    outputs = stack.deployment.outputs
    assert {"WebhooksQueueUrl", "WebhooksDeadLetterQueueUrl"} <= set(outputs)
    assert any(f.logical_id == "WebhooksFunction" for f in stack.deployment.functions)
    # And a producer configured by the stack's environment (no queue map: the queue is found
    # by the stack's naming), with the worker's job types imported
    for name, value in stack.producer_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JOBKIT_QUEUES", raising=False)
    aws.reset_clients()
    monkeypatch.syspath_prepend(str(scaffolded / "functions" / "webhooks"))
    import webhooks_jobs  # type: ignore[import-not-found]

    producer = Jobkit(Settings())
    queue_name = outputs["WebhooksQueueUrl"].rsplit("/", 1)[1]
    assert queue_name == f"{stack.deployment.stack_name}-webhooks"
    assert producer.settings.queue_url_of("webhooks").endswith(f"/{queue_name}")
    # When a job of its example type is enqueued
    producer.enqueue(webhooks_jobs.EXAMPLE, {"message": "hello"}, job_id="hello-1")
    # Then the worker's function runs it, and the log has its result
    job = wait_until(
        lambda: (j := producer.get_job("hello-1")) and j.state.finished and j,
        60,
        what="the webhooks job to finish",
    )
    assert job.state is JobState.SUCCEEDED, job
    assert job.result == {"echo": "hello"}
    # And the job log's stream pages list it by its type (its queue is found by the stack's
    # naming), once the stream's batching window has passed
    listed = wait_until(
        lambda: producer.list_jobs(job_type=webhooks_jobs.EXAMPLE),
        60,
        what="the job to be listed",
    )
    assert [j.id for j in listed] == ["hello-1"]
