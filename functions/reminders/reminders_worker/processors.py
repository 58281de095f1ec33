"""The processor of `reminders.step`: the step's adapters, and one call.

Both adapters are cheap to make (boto3 clients are shared per process), so each step makes
them from the worker's settings as they are then (a test harness may point the worker at
another stack).
"""

from __future__ import annotations

from jobkit.client import Jobkit
from jobkit.worker import JobContext, Worker
from jobkit_apps.applications import default_applications
from jobkit_apps.reminders import QUEUE, STEP, StepPayload
from reminders_worker.steps import StepResult, run_step

worker = Worker(queue=QUEUE)


@worker.processor(STEP)
def reminder_step(payload: StepPayload, ctx: JobContext) -> StepResult:
    return run_step(payload, ctx.job_id, Jobkit(worker.settings), default_applications())
