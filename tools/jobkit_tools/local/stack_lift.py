"""Resources moto's CloudFormation cannot create (alarms, Scheduler, subscriptions): taken
out of the template, then created through their own APIs with values the stack resolved."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore import xform_name
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape

from jobkit_tools.local.endpoint import LocalStackError, client
from jobkit_tools.local.stack_template import INTRINSICS

log = logging.getLogger("jobkit.local")


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
# created through their own API after the stack instead, see `create_lifted`:
# type -> (service, operation, name property or None, properties -> call parameters).
LIFTED_TYPES: dict[str, tuple[str, str, str | None, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "AWS::CloudWatch::Alarm": ("cloudwatch", "PutMetricAlarm", "AlarmName", dict),
    "AWS::Scheduler::ScheduleGroup": ("scheduler", "CreateScheduleGroup", "Name", dict),
    "AWS::Scheduler::Schedule": ("scheduler", "CreateSchedule", "Name", dict),
    "AWS::SNS::Subscription": ("sns", "Subscribe", None, _subscription_call),
}


HIDDEN_OUTPUT = "JobkitLocalValue"


class HiddenOutputs:
    """Values only the stack can compute (intrinsics, conditions), fetched as extra outputs.

    `hide(node)` turns each intrinsic (`Ref`, `Fn::GetAtt`, ...) into a hidden stack output
    and a placeholder: the stack resolves it like any other output, and `resolve_placeholders`
    puts the value back after `create_stack`.
    """

    def __init__(self, cfn: dict[str, Any]) -> None:
        self.outputs = cfn.setdefault("Outputs", {})
        self.counter = 0

    def hide(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)) in INTRINSICS:
                self.counter += 1
                name = f"{HIDDEN_OUTPUT}{self.counter}"
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


def point_refs_at_lifted(cfn: dict[str, Any], stack_name: str) -> None:
    """Replace `Ref`/`Fn::GetAtt ... Arn`/`${X}` of a lifted resource by its name or ARN.

    Moto's CloudFormation fails on a reference to a resource the template no longer has (a
    lifted one): the name it will be created with (its name property, or the default
    `create_lifted` gives it) and the ARN derived from it stand in, as literals or intrinsics
    the stack resolves (the schedule group's `!Sub jobkit-${Environment}`).
    """
    names, arns = _lifted_names_and_arns(cfn, stack_name)

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Fn::Sub" and (sub := _lifted_sub(value, names)) is not None:
                text, variables = sub
                return {"Fn::Sub": [text, rewrite(variables)]}
            replaced = _lifted_reference(key, value, names, arns)
            if replaced is not None:
                return rewrite(replaced)
        return {key: rewrite(value) for key, value in node.items()}

    for section in ("Resources", "Outputs"):
        if section in cfn:
            cfn[section] = rewrite(cfn[section])


def _lifted_names_and_arns(
    cfn: dict[str, Any], stack_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Logical id -> name, and -> ARN, of each lifted resource that has a name."""
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
    return names, arns


def _lifted_reference(
    key: str, value: Any, names: dict[str, Any], arns: dict[str, Any]
) -> Any | None:
    """What stands in for a `Ref` or `Fn::GetAtt ... Arn` of a lifted resource (None: the
    node names none)."""
    if key == "Ref" and value in names:
        return names[value]
    if key == "Fn::GetAtt":
        target = value.split(".", 1) if isinstance(value, str) else value
        if target[0] in arns and target[1] == "Arn" and arns[target[0]] is not None:
            return arns[target[0]]
    return None


def _lifted_sub(value: Any, names: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A `Fn::Sub` naming lifted resources: its text and variables, with their names added."""
    text, variables = (value, {}) if isinstance(value, str) else value
    used = {lid: names[lid] for lid in names if f"${{{lid}}}" in text}
    return (text, {**used, **variables}) if used else None


def lift_unsupported(
    cfn: dict[str, Any], hidden: HiddenOutputs
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


def resolve_placeholders(node: Any, outputs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"__jobkit_output__"}:
            return outputs[node["__jobkit_output__"]]
        return {key: resolve_placeholders(value, outputs) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_placeholders(item, outputs) for item in node]
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


def create_lifted(
    lifted: dict[str, dict[str, Any]], outputs: dict[str, str], stack_name: str, endpoint_url: str
) -> dict[str, str]:
    """Create the lifted resources through their own APIs, with the stack's resolved values."""
    created: dict[str, str] = {}
    for logical_id, entry in lifted.items():
        if resolve_placeholders(entry["Condition"], outputs) != "true":
            continue
        service, operation, name_key, to_call = LIFTED_TYPES[entry["Type"]]
        api = client(service, endpoint_url)
        properties = resolve_placeholders(entry["Properties"], outputs)
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
