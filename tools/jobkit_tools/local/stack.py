"""Deploy `template.yaml` into moto: the same template `sam deploy` uses, no Docker, no account.

The path is the one SAM takes, minus the cloud: upload each local `CodeUri`/`ContentUri` folder
as a zip to (moto's) S3, let samtranslator turn the SAM template into plain CloudFormation, and
`create_stack` it on moto. What moto's CloudFormation cannot create (alarms, Scheduler) is
taken out first and created through its own API once the stack exists, with its intrinsic
functions resolved by the stack itself (see `lift_unsupported`). Then the deployed functions
and event source mappings are read back, so what runs locally is what the template says.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from jobkit.settings import worker_environment

# Re-exported: the local stack's users import these from here.
from jobkit_tools.local.endpoint import (
    DUMMY_CREDENTIALS,
    REGION,
    LocalStackError,
    MotoServer,
    base_env,
    client,
)
from jobkit_tools.local.nested import NestedTemplateError, inline_applications
from jobkit_tools.local.stack_lift import (
    HIDDEN_OUTPUT,
    HiddenOutputs,
    create_lifted,
    lift_unsupported,
    point_refs_at_lifted,
    resolve_placeholders,
)
from jobkit_tools.local.stack_template import (
    check_parameters,
    key_policies_as_json,
    load_template,
    package,
    translate,
)

__all__ = [
    "DUMMY_CREDENTIALS",
    "REGION",
    "Deployment",
    "FunctionSpec",
    "LocalStackError",
    "MotoServer",
    "QueueMappingSpec",
    "base_env",
    "check_parameters",
    "client",
    "deploy",
    "load_template",
    "verify_ses_identities",
]

log = logging.getLogger("jobkit.local")

DEFAULT_STACK_NAME = "jobkit-local"
# What moto's CloudFormation skips and the local stack serves itself (local/http_api.py).
SERVED_LOCALLY = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage"}


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
            environment = worker_environment(function.environment)
            for key in (
                "JOBKIT_TABLE",
                "JOBKIT_PAGES_TABLE",
                "JOBKIT_QUEUE_URL_PREFIX",
                "JOBKIT_QUEUES",
                "JOBKIT_SCHEDULE_GROUP",
                "JOBKIT_RECURRING_GROUP",
                "JOBKIT_SCHEDULER_ROLE_ARN",
                "JOBKIT_APPLICATIONS_TABLE",
            ):
                if key in environment:
                    env.setdefault(key, environment[key])
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
    try:
        template = inline_applications(template, root, load_template, check_parameters)
    except NestedTemplateError as error:
        raise LocalStackError(str(error)) from error
    sources = package(template, root, client("s3", endpoint_url))
    cfn = translate(template, parameters)
    point_refs_at_lifted(cfn, stack_name)
    key_policies_as_json(cfn)
    lifted, conditions = lift_unsupported(cfn, HiddenOutputs(cfn))
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
    lifted_names = create_lifted(lifted, all_outputs, stack_name, endpoint_url)
    # A resource moto neither created nor rejected, although its condition (if any) holds.
    skipped = [
        logical_id
        for logical_id in cfn["Resources"]
        if logical_id not in resources
        and cfn["Resources"][logical_id]["Type"] not in SERVED_LOCALLY
        and resolve_placeholders(conditions.get(logical_id, "true"), all_outputs) == "true"
    ]
    for logical_id in skipped:
        log.warning(
            "local stack: moto did not create %s (%s); it is not emulated",
            logical_id,
            cfn["Resources"][logical_id]["Type"],
        )
    functions = _read_functions(cfn, resources, sources, endpoint_url)
    mappings = _read_mappings(functions, endpoint_url)
    outputs = {k: v for k, v in all_outputs.items() if not k.startswith(HIDDEN_OUTPUT)}
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
                # With the worker block's Config as plain variables, as the function sees them
                environment=worker_environment(config.get("Environment", {}).get("Variables", {})),
                code_dir=sources[key],
                layer_dirs=tuple(layer_dirs),
            )
        )
    return functions


def _read_mappings(functions: list[FunctionSpec], endpoint_url: str) -> list[QueueMappingSpec]:
    """Read the SQS event source mappings back (moto's queues never invoke a function
    themselves: see motoserver.py; the local runner, `esm.py`, polls on each mapping's behalf
    while it is enabled). A queue whose visibility timeout is below the function's timeout is
    refused, as AWS refuses that mapping."""
    lam = client("lambda", endpoint_url)
    sqs = client("sqs", endpoint_url)
    mappings = []
    for function in functions:
        found = lam.list_event_source_mappings(FunctionName=function.name)["EventSourceMappings"]
        for esm in found:
            arn = esm["EventSourceArn"]
            if arn.split(":")[2] == "dynamodb":
                continue  # a table's stream: streams.py polls it
            if arn.split(":")[2] != "sqs":
                log.warning("local stack: %s: source %s is not SQS; not polled", function.name, arn)
                continue
            if esm.get("State") != "Enabled":
                # moto creates a template's mapping disabled; CloudFormation's default is
                # enabled (a template's `Enabled: false` is not honoured here)
                lam.update_event_source_mapping(UUID=esm["UUID"], Enabled=True)
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
    environments = [worker_environment(f.environment) for f in deployment.functions]
    addresses = {env["EMAIL_FROM_ADDRESS"] for env in environments if env.get("EMAIL_FROM_ADDRESS")}
    if parameters.get("EmailFromAddress"):
        addresses.add(parameters["EmailFromAddress"])
    ses = client("sesv2", deployment.endpoint_url)
    for address in sorted(addresses):
        ses.create_email_identity(EmailIdentity=address)
    return sorted(addresses)
