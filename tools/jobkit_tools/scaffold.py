"""`jobkit new worker NAME`: a worker's folder, its block in template.yaml and a first test.

A worker is `functions/<name>/` (the handler, the job types producers import, the processors)
plus one `AWS::Serverless::Application` block in template.yaml; `functions/worker.yaml` makes
the rest (queue, dead-letter queue, function, event source mapping, alarms, log group).
"""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"[a-z][a-z0-9]{0,29}")
# The line in template.yaml above which new worker blocks go.
MARKER = "  # jobkit new worker NAME adds its block above this line."


class ScaffoldError(Exception):
    """The worker cannot be added as asked (bad name, exists already, no template)."""


def block(name: str) -> str:
    """The worker's block in template.yaml (at most 15 lines)."""
    return f"""\
  {logical_id(name)}:
    Type: AWS::Serverless::Application
    Properties:
      Location: functions/worker.yaml
      Parameters:
        Name: {name}
        Jobkit: !GetAtt JobkitSettings.Value
        Description: The {name} worker (jobkit {name}.* job types).
        # Optional (defaults): Timeout 30, VisibilityTimeout 180 (>= 6 x Timeout),
        # MaximumConcurrency 5, BatchSize 10, MaxReceiveCount 10, MemorySize 256,
        # QueueAgeAlarmSeconds (the stack's);
        # Config '{{"MY_SETTING": "value"}}' (environment); Permissions '[{{IAM statement}}]'.

"""


def logical_id(name: str) -> str:
    return name[0].upper() + name[1:]


def files(name: str) -> dict[str, str]:
    """Relative path -> content of the worker's new files."""
    jobs, worker = f"{name}_jobs", f"{name}_worker"
    return {
        f"functions/{name}/requirements.txt": "# Nothing beyond the jobkit layer.\n",
        f"functions/{name}/app.py": f'''\
"""{name} worker handler: SQS batch in, `batchItemFailures` out (see {worker})."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from {worker} import worker

from jobkit.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return worker.handle(event, context)
''',
        f"functions/{name}/{jobs}.py": f'''\
"""Job types of the {name} worker: what producers import (no worker code here)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jobkit import JobType

QUEUE = "{name}"


class ExamplePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1, max_length=1000)


# A job's timeout is its lease: keep it a few seconds under the function's Timeout (30 s).
EXAMPLE = JobType(
    "{name}.example",
    ExamplePayload,
    QUEUE,
    max_attempts=3,
    timeout=20.0,
    description="An example job of the {name} worker: replace it with yours.",
)
''',
        f"functions/{name}/{worker}.py": f'''\
"""The {name} worker's processors: plain functions, one per job type."""

from __future__ import annotations

from {jobs} import EXAMPLE, QUEUE, ExamplePayload

from jobkit.worker import JobContext, Worker

worker = Worker(queue=QUEUE)


@worker.processor(EXAMPLE)
def run_example(payload: ExamplePayload, ctx: JobContext) -> dict[str, str]:
    return {{"echo": payload.message}}
''',
        f"tests/workers/test_{name}.py": f'''\
"""The {name} worker runs its jobs (scaffolded by `jobkit new worker {name}`)."""

from __future__ import annotations

from {jobs} import EXAMPLE
from {worker} import worker

from jobkit import JobState
from jobkit_tools.testing import Harness


def test_the_example_job_runs(jobkit_harness: Harness) -> None:
    # Given the {name} worker
    jobkit_harness.register(worker)
    # When an example job is enqueued and the queue drains
    jobkit_harness.client.enqueue(EXAMPLE, {{"message": "hello"}}, job_id="example-1")
    jobkit_harness.run_until_idle()
    # Then it succeeded with the processor's result
    job = jobkit_harness.job("example-1")
    assert job.state is JobState.SUCCEEDED
    assert job.result == {{"echo": "hello"}}
''',
    }


WORKERS_CONFTEST = '''\
"""Every worker's folder (functions/<name>/) on sys.path, as Lambda has its code."""

from __future__ import annotations

import sys
from pathlib import Path

for folder in sorted((Path(__file__).resolve().parents[2] / "functions").iterdir()):
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
'''


def new_worker(root: Path, name: str) -> list[Path]:
    """Add worker `name` to the project at `root`; returns the files written or changed."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} is not a worker name: a lowercase letter, then up to 29 lowercase "
            "letters or digits (it names the queue, the folder and the job types)"
        )
    template = root / "template.yaml"
    if not template.is_file():
        raise ScaffoldError(f"no template.yaml in {root}: run this in the project's folder")
    text = template.read_text(encoding="utf-8")
    if (root / "functions" / name).exists():
        raise ScaffoldError(f"functions/{name}/ exists already")
    if re.search(rf"^  {logical_id(name)}:\s*$", text, re.MULTILINE):
        raise ScaffoldError(f"template.yaml has a resource {logical_id(name)} already")
    if MARKER not in text:
        raise ScaffoldError(
            f"template.yaml has no line {MARKER.strip()!r}: add the block yourself, under "
            f"Resources:\n{block(name)}"
        )
    written = []
    for relative, content in files(name).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    conftest = root / "tests" / "workers" / "conftest.py"
    if not conftest.exists():
        conftest.write_text(WORKERS_CONFTEST, encoding="utf-8")
        written.append(conftest)
    template.write_text(text.replace(MARKER, block(name) + MARKER, 1), encoding="utf-8")
    return [*written, template]
