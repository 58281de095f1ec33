"""Deploy `template.yaml` into moto: the same template `sam deploy` uses, no Docker, no account.

The path is the one SAM takes, minus the cloud: upload each local `CodeUri`/`ContentUri` folder
as a zip to (moto's) S3, let samtranslator turn the SAM template into plain CloudFormation, and
`create_stack` it on moto. What moto's CloudFormation cannot create (alarms, Scheduler) is
taken out first and created through its own API once the stack exists, with its intrinsic
functions resolved by the stack itself (see `_lift_unsupported`). Then the deployed functions
and event source mappings are read back, so what runs locally is what the template says.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3
import yaml
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import (
    to_py27_compatible_template,
    undo_mark_unicode_str_in_template,
)
from samtranslator.yaml_helper import intrinsics_multi_constructor

log = logging.getLogger("jobkit.local")

REGION = "us-east-1"
DEFAULT_STACK_NAME = "jobkit-local"
ARTIFACT_BUCKET = "jobkit-local-artifacts"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def _subscription_call(properties: dict[str, Any]) -> dict[str, Any]:
    """AWS::SNS::Subscription properties -> sns.subscribe parameters (the rest are attributes)."""
    call: dict[str, Any] = {
        k: properties.pop(k) for k in ("TopicArn", "Protocol", "Endpoint") if k in properties
    }
    properties.pop("Region", None)
    attributes = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in properties.items()
    }
    if attributes:
        call["Attributes"] = {
            k: v.lower() if v in ("True", "False") else v for k, v in attributes.items()
        }
    return {**call, "ReturnSubscriptionArn": True}


# Resource types moto's CloudFormation skips (with a warning, leaving the stack "complete"),
# created through their own API after the stack instead, see `_create_lifted`:
# type -> (service, operation, name property or None, properties -> call parameters).
LIFTED_TYPES: dict[str, tuple[str, str, str | None, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "AWS::CloudWatch::Alarm": ("cloudwatch", "PutMetricAlarm", "AlarmName", dict),
    "AWS::Scheduler::ScheduleGroup": ("scheduler", "CreateScheduleGroup", "Name", dict),
    "AWS::Scheduler::Schedule": ("scheduler", "CreateSchedule", "Name", dict),
    "AWS::SNS::Subscription": ("sns", "Subscribe", None, _subscription_call),
}
_HIDDEN_OUTPUT = "JobkitLocalValue"
_INTRINSICS = {
    "Ref",
    "Condition",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::If",
    "Fn::Select",
    "Fn::Split",
    "Fn::FindInMap",
    "Fn::ImportValue",
    "Fn::GetAZs",
    "Fn::Base64",
    "Fn::ToJsonString",
}


class LocalStackError(Exception):
    """The local stack could not start or deploy; the message says which step and why."""


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short forms (`!Ref`, `!Sub`) as long forms."""


_CfnLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def load_template(path: Path) -> dict[str, Any]:
    """Read a SAM/CloudFormation YAML template, short-form tags included."""
    with path.open(encoding="utf-8") as handle:
        template = yaml.load(handle, Loader=_CfnLoader)
    if not isinstance(template, dict) or "Resources" not in template:
        raise LocalStackError(f"{path} is not a CloudFormation template (no Resources)")
    return cast(dict[str, Any], template)


def base_env(endpoint_url: str) -> dict[str, str]:
    """Environment that points every boto3 client of a process at moto, and nothing else."""
    return {
        **DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # A developer's ~/.aws must not change what the local stack does (profiles, retries).
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def client(service: str, endpoint_url: str) -> Any:
    """A boto3 client on moto (typed `Any`: callers use several services generically)."""
    make: Any = boto3.client  # its overloads want a literal service name
    return make(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


class MotoServer:
    """Moto's server in a child process on a free loopback port (see `motoserver.py`)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.endpoint_url = ""

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and return its endpoint URL once it listens."""
        script = Path(__file__).with_name("motoserver.py")
        stderr: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = self.log_path.open("a", encoding="utf-8")
        env = {**os.environ, **base_env("")}
        env.pop("AWS_ENDPOINT_URL")
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            # Its own session: a Ctrl-C in the terminal reaches the dev process only, which
            # then stops the emulator last, after the workers that still talk to it.
            start_new_session=True,
        )
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        line = _readline_with_timeout(self.process, timeout)
        if not line:
            self.stop()
            raise LocalStackError("moto server did not start (see its log)")
        port = int(json.loads(line)["port"])
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self.endpoint_url

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits on EOF); kill it if it does not."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _readline_with_timeout(process: subprocess.Popen[str], timeout: float) -> str:
    """First stdout line of a child, or "" if it exits or stays silent for `timeout` s."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()


@dataclass(frozen=True)
class FunctionSpec:
    """A deployed function as moto reports it, plus where its code lives on this machine."""

    logical_id: str
    name: str
    arn: str
    handler: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    code_dir: Path
    layer_dirs: tuple[Path, ...]


@dataclass(frozen=True)
class QueueMappingSpec:
    """An SQS event source mapping as moto reports it (the local runner polls on its behalf)."""

    uuid: str
    function_name: str
    queue_arn: str
    queue_url: str
    batch_size: int
    batching_window: float
    maximum_concurrency: int | None
    report_batch_item_failures: bool


@dataclass
class Deployment:
    """What `deploy` created: enough for the runner, the demo and `.jobkit/local.json`."""

    stack_name: str
    endpoint_url: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    functions: list[FunctionSpec]
    mappings: list[QueueMappingSpec]
    lifted: dict[str, str] = field(default_factory=dict)  # logical id -> name, made by API
    skipped: list[str] = field(default_factory=list)  # logical ids moto did not create

    def producer_env(self) -> dict[str, str]:
        """Environment for a process that enqueues jobs into this stack (JOBKIT_*, AWS_*)."""
        env = base_env(self.endpoint_url)
        for function in self.functions:
            for key in (
                "JOBKIT_TABLE",
                "JOBKIT_QUEUES",
                "JOBKIT_SCHEDULE_GROUP",
                "JOBKIT_RECURRING_GROUP",
                "JOBKIT_SCHEDULER_ROLE_ARN",
                "JOBKIT_APPLICATIONS_TABLE",
            ):
                if key in function.environment:
                    env.setdefault(key, function.environment[key])
        env["JOBKIT_DEAD_LETTER_QUEUES"] = json.dumps(self.dead_letter_queues())
        return env

    def dead_letter_queues(self) -> dict[str, str]:
        """Queue name -> DLQ URL, from each worker's own JOBKIT_* settings."""
        return {
            f.environment["JOBKIT_WORKER_QUEUE"]: f.environment["JOBKIT_DEAD_LETTER_QUEUE_URL"]
            for f in self.functions
            if "JOBKIT_WORKER_QUEUE" in f.environment
            and "JOBKIT_DEAD_LETTER_QUEUE_URL" in f.environment
        }

    def describe(self) -> dict[str, Any]:
        """JSON-able summary, written to `.jobkit/local.json` for the CLI in another terminal."""
        env = self.producer_env()
        return {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "stack_name": self.stack_name,
            "outputs": self.outputs,
            "table": env.get("JOBKIT_TABLE", ""),
            "queues": json.loads(env.get("JOBKIT_QUEUES", "{}")),
            "dead_letter_queues": self.dead_letter_queues(),
            "functions": {
                f.logical_id: {"name": f.name, "code_dir": str(f.code_dir)} for f in self.functions
            },
            "env": env,
        }


class _AnyPolicyMap(dict[str, str]):
    """samtranslator's managed-policy map, offline: any name is an AWS managed policy.

    Moto does not evaluate policies, so an ARN of the right shape is all that matters.
    """

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __getitem__(self, key: str) -> str:
        return f"arn:aws:iam::aws:policy/{key}"

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


def _zip_folder(folder: Path) -> bytes:
    """Zip a code folder as `sam build` would ship it, minus caches."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _package(template: dict[str, Any], root: Path, s3: Any) -> dict[str, Path]:
    """Upload each local code folder to moto's S3; point the template at it.

    Returns S3 key -> local folder, which is how a translated function or layer is traced back
    to its source after samtranslator renamed things (layers get a hash suffix).
    """
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    function_globals = template.get("Globals", {}).get("Function", {})
    sources: dict[str, Path] = {}
    for logical_id, resource in template["Resources"].items():
        kind = resource.get("Type")
        properties = resource.setdefault("Properties", {})
        if kind == "AWS::Serverless::Function":
            prop = "CodeUri"
            uri = properties.get(prop, function_globals.get(prop))
        elif kind == "AWS::Serverless::LayerVersion":
            prop = "ContentUri"
            uri = properties.get(prop)
        else:
            continue
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        folder = (root / uri).resolve()
        if not folder.is_dir():
            raise LocalStackError(f"{logical_id}: {prop} {uri!r} is not a folder under {root}")
        key = f"{logical_id}.zip"
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=_zip_folder(folder))
        properties[prop] = f"s3://{ARTIFACT_BUCKET}/{key}"
        sources[key] = folder
    return sources


class _HiddenOutputs:
    """Values only the stack can compute (intrinsics, conditions), fetched as extra outputs.

    `hide(node)` turns each intrinsic (`Ref`, `Fn::GetAtt`, ...) into a hidden stack output
    and a placeholder: the stack resolves it like any other output, and `_resolve_placeholders`
    puts the value back after `create_stack`.
    """

    def __init__(self, cfn: dict[str, Any]) -> None:
        self.outputs = cfn.setdefault("Outputs", {})
        self.counter = 0

    def hide(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)) in _INTRINSICS:
                self.counter += 1
                name = f"{_HIDDEN_OUTPUT}{self.counter}"
                self.outputs[name] = {"Value": node}
                return {"__jobkit_output__": name}
            return {key: self.hide(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.hide(item) for item in node]
        return node

    def condition(self, resource: dict[str, Any]) -> Any:
        """A placeholder for "true"/"false": whether the resource's Condition holds."""
        if "Condition" not in resource:
            return "true"
        return self.hide({"Fn::If": [resource["Condition"], "true", "false"]})


def _arn_of_lifted(kind: str, properties: dict[str, Any], name: Any) -> Any:
    """`Fn::GetAtt [X, Arn]` of a lifted resource, as an expression the stack can resolve."""
    prefix: list[Any] = ["arn:aws:"]
    region_account = [":", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, ":"]
    if kind == "AWS::Scheduler::ScheduleGroup":
        parts = [*prefix, "scheduler", *region_account, "schedule-group/", name]
    elif kind == "AWS::Scheduler::Schedule":
        group = properties.get("GroupName", "default")
        parts = [*prefix, "scheduler", *region_account, "schedule/", group, "/", name]
    elif kind == "AWS::CloudWatch::Alarm":
        parts = [*prefix, "cloudwatch", *region_account, "alarm:", name]
    else:
        return None
    return {"Fn::Join": ["", parts]}


def _point_refs_at_lifted(cfn: dict[str, Any], stack_name: str) -> None:
    """Replace `Ref`/`Fn::GetAtt ... Arn`/`${X}` of a lifted resource by its name or ARN.

    Moto's CloudFormation fails on a reference to a resource the template no longer has (a
    lifted one): the name it will be created with (its name property, or the default
    `_create_lifted` gives it) and the ARN derived from it stand in, as literals or intrinsics
    the stack resolves (the schedule group's `!Sub jobkit-${Environment}`).
    """
    names: dict[str, Any] = {}
    arns: dict[str, Any] = {}
    for logical_id, resource in cfn["Resources"].items():
        kind = resource.get("Type")
        if kind not in LIFTED_TYPES or LIFTED_TYPES[kind][2] is None:
            continue
        properties = resource.get("Properties", {})
        name = properties.get(LIFTED_TYPES[kind][2]) or f"{stack_name}-{logical_id}"
        names[logical_id] = name
        arns[logical_id] = _arn_of_lifted(kind, properties, name)

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref" and value in names:
                return rewrite(names[value])
            if key == "Fn::GetAtt":
                target = value.split(".", 1) if isinstance(value, str) else value
                if target[0] in arns and target[1] == "Arn" and arns[target[0]] is not None:
                    return rewrite(arns[target[0]])
            if key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                used = {lid: names[lid] for lid in names if f"${{{lid}}}" in text}
                if used:
                    return {"Fn::Sub": [text, rewrite({**used, **variables})]}
        return {key: rewrite(value) for key, value in node.items()}

    for section in ("Resources", "Outputs"):
        if section in cfn:
            cfn[section] = rewrite(cfn[section])


def _lift_unsupported(
    cfn: dict[str, Any], hidden: _HiddenOutputs
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Take out the resources moto's CloudFormation cannot create; keep what they need resolvable.

    Returns the lifted resources (properties and condition as placeholders), and the condition
    placeholder of every conditional resource left in, to tell a resource switched off by its
    condition from one moto skipped.
    """
    lifted: dict[str, dict[str, Any]] = {}
    conditions: dict[str, Any] = {}
    # Schedule groups first: a schedule is created in its group.
    order = sorted(
        cfn["Resources"],
        key=lambda lid: cfn["Resources"][lid].get("Type") != "AWS::Scheduler::ScheduleGroup",
    )
    for logical_id in order:
        resource = cfn["Resources"][logical_id]
        if resource.get("Type") in LIFTED_TYPES:
            del cfn["Resources"][logical_id]
            lifted[logical_id] = {
                "Type": resource["Type"],
                "Properties": hidden.hide(resource.get("Properties", {})),
                "Condition": hidden.condition(resource),
            }
        elif "Condition" in resource:
            conditions[logical_id] = hidden.condition(resource)
    return lifted, conditions


def _resolve_placeholders(node: Any, outputs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"__jobkit_output__"}:
            return outputs[node["__jobkit_output__"]]
        return {key: _resolve_placeholders(value, outputs) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_placeholders(item, outputs) for item in node]
    return node


def _coerce(value: Any, shape: Shape) -> Any:
    """Give a CloudFormation property value the type the API wants ("60" -> 60, "true" -> True).

    CloudFormation is lenient where botocore's parameter validation is not.
    """
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        coerced = {}
        for key, item in value.items():
            if key in shape.members:
                coerced[key] = _coerce(item, shape.members[key])
            else:
                log.warning("local stack: ignoring property %s (not in %s)", key, shape.name)
        return coerced
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_coerce(item, shape.member) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: _coerce(item, shape.value) for key, item in value.items()}
    if shape.type_name in ("integer", "long") and isinstance(value, str):
        return int(value)
    if shape.type_name in ("double", "float") and isinstance(value, str):
        return float(value)
    if shape.type_name == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    return value


def _create_lifted(
    lifted: dict[str, dict[str, Any]], outputs: dict[str, str], stack_name: str, endpoint_url: str
) -> dict[str, str]:
    """Create the lifted resources through their own APIs, with the stack's resolved values."""
    created: dict[str, str] = {}
    for logical_id, entry in lifted.items():
        if _resolve_placeholders(entry["Condition"], outputs) != "true":
            continue
        service, operation, name_key, to_call = LIFTED_TYPES[entry["Type"]]
        api = client(service, endpoint_url)
        properties = _resolve_placeholders(entry["Properties"], outputs)
        if name_key is not None:
            properties.setdefault(name_key, f"{stack_name}-{logical_id}")
        shape = api.meta.service_model.operation_model(operation).input_shape
        try:
            response = getattr(api, xform_name(operation))(**_coerce(to_call(properties), shape))
        except ClientError as error:
            raise LocalStackError(f"{logical_id} ({entry['Type']}): {error}") from error
        created[logical_id] = (
            properties[name_key] if name_key is not None else str(response.get("SubscriptionArn"))
        )
    return created


def check_parameters(template: dict[str, Any], overrides: dict[str, str]) -> None:
    """Refuse parameter values CloudFormation would refuse; moto's CloudFormation does not check.

    Unknown names, missing values, `AllowedValues`, `MinValue`/`MaxValue` of a `Number`,
    `MinLength`/`MaxLength`/`AllowedPattern` of a `String`.
    """
    declared: dict[str, Any] = template.get("Parameters", {})
    problems = [
        f"{name}: no such parameter (the template has {', '.join(sorted(declared))})"
        for name in overrides
        if name not in declared
    ]
    for name, spec in declared.items():
        value = overrides.get(name, spec.get("Default"))
        if value is None:
            problems.append(f"{name}: no value and no default (pass {name}=...)")
            continue
        value = str(value)
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            problems.append(f"{name}={value!r}: not one of {allowed}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{name}={value!r}: not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"{name}={value}: below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"{name}={value}: above MaxValue {spec['MaxValue']}")
        elif spec.get("Type") == "String":
            if "MinLength" in spec and len(value) < int(spec["MinLength"]):
                problems.append(f"{name}: shorter than MinLength {spec['MinLength']}")
            if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
                problems.append(f"{name}: longer than MaxLength {spec['MaxLength']}")
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, value):
                problems.append(f"{name}={value!r}: does not match {pattern}")
    if problems:
        raise LocalStackError("invalid parameters: " + "; ".join(problems))


def translate(template: dict[str, Any], parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """SAM -> plain CloudFormation, offline: samtranslator's `transform`, with a region set."""
    values: dict[str, Any] = dict(parameters or {})
    to_py27_compatible_template(template, values)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    try:
        translated = translator.translate(
            template, parameter_values=values, get_managed_policy_map=_AnyPolicyMap
        )
    except Exception as error:  # samtranslator's InvalidDocumentException lists every cause
        causes = getattr(error, "causes", None) or []
        detail = "; ".join(str(getattr(c, "message", c)) for c in causes) or str(error)
        raise LocalStackError(f"SAM transform failed: {detail}") from error
    return cast(dict[str, Any], undo_mark_unicode_str_in_template(translated))


def deploy(
    endpoint_url: str,
    template_path: Path,
    parameters: dict[str, str] | None = None,
    stack_name: str = DEFAULT_STACK_NAME,
) -> Deployment:
    """Deploy the template into moto and read back what will run."""
    started = time.monotonic()
    root = template_path.resolve().parent
    template = load_template(template_path)
    check_parameters(template, parameters or {})
    sources = _package(template, root, client("s3", endpoint_url))
    cfn = translate(template, parameters)
    _point_refs_at_lifted(cfn, stack_name)
    _key_policies_as_json(cfn)
    lifted, conditions = _lift_unsupported(cfn, _HiddenOutputs(cfn))
    cloudformation = client("cloudformation", endpoint_url)
    try:
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(cfn, default=str),
            Parameters=[
                {"ParameterKey": key, "ParameterValue": str(value)}
                for key, value in (parameters or {}).items()
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except ClientError as error:
        raise LocalStackError(f"create_stack failed: {error}") from error
    stack = _wait_for_stack(cloudformation, stack_name)
    all_outputs = {o["OutputKey"]: str(o.get("OutputValue", "")) for o in stack.get("Outputs", [])}
    # Moto lists a skipped conditional resource without ids, and a layer without a physical id.
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
        if r.get("LogicalResourceId")
    }
    _fix_layer_refs(cfn, all_outputs, endpoint_url)
    _complete_tables(cfn, resources, endpoint_url)
    lifted_names = _create_lifted(lifted, all_outputs, stack_name, endpoint_url)
    # A resource moto neither created nor rejected, although its condition (if any) holds.
    skipped = [
        logical_id
        for logical_id in cfn["Resources"]
        if logical_id not in resources
        and _resolve_placeholders(conditions.get(logical_id, "true"), all_outputs) == "true"
    ]
    for logical_id in skipped:
        log.warning(
            "local stack: moto did not create %s (%s); it is not emulated",
            logical_id,
            cfn["Resources"][logical_id]["Type"],
        )
    functions = _read_functions(cfn, resources, sources, endpoint_url)
    mappings = _read_mappings(functions, endpoint_url)
    outputs = {k: v for k, v in all_outputs.items() if not k.startswith(_HIDDEN_OUTPUT)}
    log.debug("local stack: deployed %s in %.1f s", stack_name, time.monotonic() - started)
    return Deployment(
        stack_name=stack_name,
        endpoint_url=endpoint_url,
        outputs=outputs,
        resources=resources,
        functions=functions,
        mappings=mappings,
        lifted=lifted_names,
        skipped=skipped,
    )


def _wait_for_stack(cloudformation: Any, stack_name: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return stack
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                for e in events
                if e.get("ResourceStatus", "").endswith("FAILED")
            ]
            raise LocalStackError(f"stack {stack_name} is {status}: {'; '.join(reasons)}")
        time.sleep(0.2)


def _fix_layer_refs(cfn: dict[str, Any], outputs: dict[str, str], endpoint_url: str) -> None:
    """Moto answers `Ref` of a layer version with an object's repr; put the ARN instead."""
    broken = {k for k, v in outputs.items() if v.startswith("<moto.")}
    if not broken:
        return
    # Each layer is found by its Description (its LayerName is usually an intrinsic)
    by_description: dict[str, str] = {}
    lam = client("lambda", endpoint_url)
    for layer in lam.list_layers()["Layers"]:
        latest = layer["LatestMatchingVersion"]
        by_description[latest.get("Description", "")] = latest["LayerVersionArn"]
    for key in broken:
        value = cfn.get("Outputs", {}).get(key, {}).get("Value")
        ref = value.get("Ref") if isinstance(value, dict) else None
        resource = cfn["Resources"].get(ref, {}) if isinstance(ref, str) else {}
        if resource.get("Type") != "AWS::Lambda::LayerVersion":
            continue
        description = resource["Properties"].get("Description", "")
        if description in by_description:
            outputs[key] = by_description[description]


def _key_policies_as_json(cfn: dict[str, Any]) -> None:
    """Hand moto each KMS key's policy as the JSON string its API stores, not an object.

    Moto's CloudFormation keeps `KeyPolicy` as given, and every later call on the key (even
    `DescribeKey`) then fails parsing it; `Fn::ToJsonString` (which moto resolves) serializes it
    after its intrinsics are resolved.
    """
    for resource in cfn["Resources"].values():
        properties = resource.get("Properties", {})
        policy = properties.get("KeyPolicy")
        written_out = isinstance(policy, dict) and not set(policy) & _INTRINSICS
        if resource.get("Type") == "AWS::KMS::Key" and written_out:
            properties["KeyPolicy"] = {"Fn::ToJsonString": policy}


def _complete_tables(cfn: dict[str, Any], resources: dict[str, str], endpoint_url: str) -> None:
    """Apply the table settings moto's CloudFormation ignores: TTL and point-in-time recovery."""
    ddb = client("dynamodb", endpoint_url)
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table" or not resources.get(logical_id):
            continue
        table = resources[logical_id]
        properties = resource.get("Properties", {})
        ttl = properties.get("TimeToLiveSpecification", {})
        if isinstance(ttl.get("AttributeName"), str) and str(ttl.get("Enabled")).lower() == "true":
            ddb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = properties.get("PointInTimeRecoverySpecification", {})
        if str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
            ddb.update_continuous_backups(
                TableName=table,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )


def _read_functions(
    cfn: dict[str, Any], resources: dict[str, str], sources: dict[str, Path], endpoint_url: str
) -> list[FunctionSpec]:
    """Read each deployed function back from moto; trace its code and layers to local folders."""
    lam = client("lambda", endpoint_url)
    functions = []
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function" or logical_id not in resources:
            continue
        properties = resource["Properties"]
        key = properties.get("Code", {}).get("S3Key")
        if key not in sources:
            log.warning("local stack: %s has no local code folder; not run", logical_id)
            continue
        layer_dirs = []
        for layer in properties.get("Layers", []):
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            layer_key = cfn["Resources"].get(ref, {}).get("Properties", {}).get("Content", {})
            layer_key = layer_key.get("S3Key") if isinstance(layer_key, dict) else None
            if layer_key in sources:
                layer_dirs.append(sources[layer_key])
            else:
                log.warning("local stack: %s: layer %s is not local; skipped", logical_id, layer)
        config = lam.get_function_configuration(FunctionName=resources[logical_id])
        functions.append(
            FunctionSpec(
                logical_id=logical_id,
                name=config["FunctionName"],
                arn=config["FunctionArn"],
                handler=config["Handler"],
                timeout=int(config.get("Timeout", 3)),
                memory_size=int(config.get("MemorySize", 128)),
                environment=dict(config.get("Environment", {}).get("Variables", {})),
                code_dir=sources[key],
                layer_dirs=tuple(layer_dirs),
            )
        )
    return functions


def _read_mappings(functions: list[FunctionSpec], endpoint_url: str) -> list[QueueMappingSpec]:
    """Read the SQS event source mappings back, then switch them off in moto.

    Moto would otherwise try to invoke the function itself (in Docker) on every SendMessage;
    the local runner (`esm.py`) polls on the mapping's behalf instead. A queue whose visibility
    timeout is below the function's timeout is refused, as AWS refuses that mapping.
    """
    lam = client("lambda", endpoint_url)
    sqs = client("sqs", endpoint_url)
    mappings = []
    for function in functions:
        found = lam.list_event_source_mappings(FunctionName=function.name)["EventSourceMappings"]
        for esm in found:
            arn = esm["EventSourceArn"]
            if arn.split(":")[2] != "sqs":
                log.warning("local stack: %s: source %s is not SQS; not polled", function.name, arn)
                continue
            if esm.get("State") == "Enabled":
                lam.update_event_source_mapping(UUID=esm["UUID"], Enabled=False)
            else:
                continue  # disabled in the template: not polled on AWS either
            concurrency = esm.get("ScalingConfig", {}).get("MaximumConcurrency")
            queue_url = sqs.get_queue_url(QueueName=arn.split(":")[-1])["QueueUrl"]
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            visibility = int(attributes["VisibilityTimeout"])
            if visibility < function.timeout:
                raise LocalStackError(
                    f"{function.logical_id}: queue visibility timeout {visibility} s is less than"
                    f" the function timeout {function.timeout} s (AWS refuses this mapping)"
                )
            mappings.append(
                QueueMappingSpec(
                    uuid=esm["UUID"],
                    function_name=function.name,
                    queue_arn=arn,
                    queue_url=queue_url,
                    batch_size=int(esm.get("BatchSize", 10)),
                    batching_window=float(esm.get("MaximumBatchingWindowInSeconds", 0)),
                    maximum_concurrency=int(concurrency) if concurrency else None,
                    report_batch_item_failures="ReportBatchItemFailures"
                    in esm.get("FunctionResponseTypes", []),
                )
            )
    return mappings


def verify_ses_identities(deployment: Deployment, parameters: dict[str, str]) -> list[str]:
    """Verify the sender identities moto's SES must know before it accepts a send.

    On AWS an identity is verified once, by a person; locally every `EMAIL_FROM_ADDRESS` a
    function is configured with is verified at start.
    """
    addresses = {
        f.environment["EMAIL_FROM_ADDRESS"]
        for f in deployment.functions
        if f.environment.get("EMAIL_FROM_ADDRESS")
    }
    if parameters.get("EmailFromAddress"):
        addresses.add(parameters["EmailFromAddress"])
    ses = client("sesv2", deployment.endpoint_url)
    for address in sorted(addresses):
        ses.create_email_identity(EmailIdentity=address)
    return sorted(addresses)
