"""Find the stack the CLI talks to: the environment, the local stack, or a deployed stack."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from jobkit.settings import Settings

LOCAL_STATE = Path(".jobkit") / "local.json"


class StackNotFoundError(Exception):
    """Neither a local stack nor a deployed one could be found."""


@dataclass(frozen=True)
class Target:
    """Where the stack is and the settings a producer needs there."""

    description: str
    settings: Settings
    endpoint_url: str | None = None


def settings_from_outputs(outputs: dict[str, str]) -> Settings:
    """`JobsTableName`, `QueueUrlPrefix` (a deployed stack: every queue is <prefix><name>),
    `<Name>QueueUrl` and `<Name>DeadLetterQueueUrl` (the local stack, its workers inlined),
    `ScheduleGroupName`, `RecurringScheduleGroupName` and `SchedulerRoleArn` -> settings."""
    queues: dict[str, str] = {}
    dead: dict[str, str] = {}
    for key, value in outputs.items():
        if m := re.fullmatch(r"(\w+?)DeadLetterQueueUrl", key):
            dead[m.group(1).lower()] = value
        elif m := re.fullmatch(r"(\w+?)QueueUrl", key):
            queues[m.group(1).lower()] = value
    if "JobsTableName" not in outputs:
        raise StackNotFoundError("the stack has no JobsTableName output: is it a jobkit stack?")
    return Settings(
        table=outputs["JobsTableName"],
        pages_table=outputs.get("JobPagesTableName", ""),
        queue_url_prefix=outputs.get("QueueUrlPrefix", ""),
        queues=queues,
        dead_letter_queues=dead,
        schedule_group=outputs.get("ScheduleGroupName", ""),
        recurring_group=outputs.get("RecurringScheduleGroupName", ""),
        scheduler_role_arn=outputs.get("SchedulerRoleArn", ""),
    )


def project_root(start: Path | None = None) -> Path:
    """The project this folder is in: the nearest folder, here or above, with a template.yaml
    (this folder when there is none)."""
    here = (start or Path.cwd()).resolve()
    return next((f for f in (here, *here.parents) if (f / "template.yaml").is_file()), here)


def local_state(start: Path | None = None) -> Path | None:
    """The `.jobkit/local.json` of the project this folder is in: here or in a parent folder
    (None: there is none)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / LOCAL_STATE).is_file():
            return folder / LOCAL_STATE
    return None


def find(stack_name: str | None = None, state_file: Path | None = None) -> Target:
    """The environment wins (JOBKIT_TABLE set), then a running local stack (its state file in
    this folder or a parent), then CloudFormation."""
    if os.environ.get("JOBKIT_TABLE") and not stack_name:
        return Target("settings from the environment", Settings())
    state_file = state_file or local_state()
    if state_file is not None and state_file.exists() and not stack_name:
        state = json.loads(state_file.read_text())
        if not _alive(state.get("pid")):  # left behind by a dev process that was killed
            return _deployed(os.environ.get("JOBKIT_STACK", "jobkit-dev"))
        endpoint = state["endpoint_url"]
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        for name, value in (
            ("AWS_DEFAULT_REGION", state.get("region", "us-east-1")),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ):
            os.environ.setdefault(name, value)
        return Target(
            f"local stack at {endpoint}", settings_from_outputs(state["outputs"]), endpoint
        )
    return _deployed(stack_name or os.environ.get("JOBKIT_STACK", "jobkit-dev"))


def _alive(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _deployed(stack_name: str) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise StackNotFoundError(
            f"no jobkit stack found: no local stack is running (looked for "
            f"{LOCAL_STATE} in {Path.cwd().resolve()} and its parents; start one with "
            f"`jobkit dev` in the project's folder) and the deployed stack {stack_name!r} could "
            f"not be read ({exc}). Deploy with `sam deploy --guided`, or pass --stack NAME."
        ) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return Target(f"stack {stack_name}", settings_from_outputs(outputs))
