"""A test harness for jobkit: jobs run inline against moto, on a virtual clock.

```python
def test_the_reminder_goes_out_a_day_later(jobkit_harness: Harness) -> None:
    jobkit_harness.register(reminders_worker)
    jobkit_harness.client.enqueue(REMIND, {...}, job_id="r1", delay=timedelta(days=1))
    jobkit_harness.advance(timedelta(days=1))
    assert jobkit_harness.job("r1").state == JobState.SUCCEEDED
```

`Harness` starts moto (`mock_aws`) and a frozen clock (time-machine, `tick=False`), creates the
job log (the schema of template.yaml's JobsTable), a queue and a dead-letter queue for every
queue of the declared job types and registered workers, and a Scheduler schedule group. Time
moves only when the test says so: `advance`, `run_until` and `run_until_idle` fire the
Scheduler schedules that fall due (with the local stack's `ScheduleFirer`), hand every visible
message to its queue's worker as Lambda's event source mapping would (a batch, an SQS event, a
Lambda context, the records not reported as failures deleted) and then jump straight to the
next moment something can happen: a message's `DelaySeconds` or visibility timeout running
out, or a schedule's next fire time. A seven-day sequence runs in milliseconds.

The harness learns those moments from botocore's public event system: a hook on
`provide-client-params` of `SendMessage(Batch)`, `ChangeMessageVisibility(Batch)` and
`ReceiveMessage` on jobkit's shared clients (`jobkit.aws`) and on boto3's default session
(`boto3.client(...)` in a test). A message sent or hidden through another client is invisible
to it: `watch(client)` adds that client.

Also a pytest plugin (entry point `pytest11`): the `jobkit_harness` fixture is a started
`Harness` at `DEFAULT_START`. Nothing in jobkit or its functions imports this package (it was
`jobkit.testing`, in the Lambda layer); moto and time-machine (the `testing` extra) are imported
when a harness starts, so the plugin loads without them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobkit_tools.testing.clock import DEFAULT_START
from jobkit_tools.testing.harness import Harness
from jobkit_tools.testing.models import DeadLetter, HarnessError, LambdaContext, SentEmail
from jobkit_tools.testing.stack import APPLICATIONS_TABLE, JOB_LOG_TABLE, JOB_LOG_TTL, PAGES_TABLE

__all__ = [
    "APPLICATIONS_TABLE",
    "DEFAULT_START",
    "JOB_LOG_TABLE",
    "JOB_LOG_TTL",
    "PAGES_TABLE",
    "DeadLetter",
    "Harness",
    "HarnessError",
    "LambdaContext",
    "SentEmail",
    "jobkit_harness",
]


@pytest.fixture
def jobkit_harness() -> Iterator[Harness]:
    """A started `Harness` (moto, a virtual clock at `DEFAULT_START`); stopped after the test."""
    with Harness() as harness:
        yield harness
