"""Inline a template's local nested applications, for moto.

`template.yaml` deploys each worker as an `AWS::Serverless::Application` whose `Location` is
`functions/worker.yaml`. On AWS, CloudFormation makes each a nested stack. moto's
CloudFormation can create nested stacks, but the local stack must also see inside them (to
package their code, lift the alarms moto cannot create, and run their functions), so it
inlines each one instead: the application's logical id prefixes the names of the nested
template's resources, conditions and outputs (`Email` + `Queue` -> `EmailQueue`), its
parameters become what the block passes (or their defaults), and `!GetAtt Email.Outputs.X`
in the parent becomes the nested output's value.

Written by hand: neither samtranslator nor moto inlines a nested template, and SAM CLI's
nested-stack support reads templates without rewriting them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

APPLICATION = "AWS::Serverless::Application"
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


class NestedTemplateError(Exception):
    """A nested application the local stack cannot inline."""


def inline_applications(
    template: dict[str, Any],
    root: Path,
    load: Callable[[Path], dict[str, Any]],
    check: Callable[[dict[str, Any], dict[str, str]], None],
) -> dict[str, Any]:
    """`template` with every application whose `Location` is a local file inlined.

    `load` reads a template file; `check` validates literal parameter values against a
    template's `Parameters` (both from the local stack, so the nested template is read and
    checked as the parent is).
    """
    inlined = copy.deepcopy(template)
    resources: dict[str, Any] = inlined["Resources"]
    outputs: dict[str, Any] = {}
    for logical_id, resource in list(resources.items()):
        location = resource.get("Properties", {}).get("Location")
        if resource.get("Type") != APPLICATION or not isinstance(location, str):
            continue
        path = (root / location).resolve()
        if not path.is_file():
            raise NestedTemplateError(f"{logical_id}: Location {location!r} is not a file")
        nested = load(path)
        if "Globals" in nested:
            raise NestedTemplateError(f"{location}: Globals in a nested template is not supported")
        parameters = _parameters(logical_id, resource, nested, inlined, check)
        rename = _Renamer(logical_id, parameters)
        del resources[logical_id]
        for name, child in nested["Resources"].items():
            child = rename(child)
            if "Condition" in child:
                child["Condition"] = logical_id + child["Condition"]
            _rebase_code(child, path.parent, root)
            resources[logical_id + name] = child
        for name, condition in nested.get("Conditions", {}).items():
            inlined.setdefault("Conditions", {})[logical_id + name] = rename(condition)
        for name, output in nested.get("Outputs", {}).items():
            outputs[f"{logical_id}.Outputs.{name}"] = rename(output["Value"])
            inlined.setdefault("Outputs", {})[logical_id + name] = rename(output)
    return _decide_ifs(_replace_output_refs(inlined, outputs))


def _parameters(
    logical_id: str,
    resource: dict[str, Any],
    nested: dict[str, Any],
    parent: dict[str, Any],
    check: Callable[[dict[str, Any], dict[str, str]], None],
) -> dict[str, Any]:
    """Nested parameter name -> the value the block passes (parent intrinsics) or its default."""
    given: dict[str, Any] = dict(resource.get("Properties", {}).get("Parameters", {}))
    declared: dict[str, Any] = nested.get("Parameters", {})
    literal = {k: str(v) for k, v in given.items() if not isinstance(v, dict | list)}
    checked = {k: v for k, v in declared.items() if k in literal or k not in given}
    unknown = sorted(set(given) - set(declared))
    try:
        if unknown:
            raise NestedTemplateError(f"no such parameter {', '.join(unknown)}")
        check({"Parameters": checked}, literal)
    except Exception as error:
        raise NestedTemplateError(f"{logical_id}: {error}") from error
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        value = given.get(name, spec.get("Default"))
        if value is None:
            raise NestedTemplateError(f"{logical_id}: parameter {name} has no value")
        if spec.get("Type") == "CommaDelimitedList":
            value = _as_list(value, parent)
        elif spec.get("Type") == "Number" and isinstance(value, str) and value.isdigit():
            value = int(value)
        elif spec.get("Type") != "Number" and not isinstance(value, dict | list):
            value = str(value)
        values[name] = value
    return values


def _as_list(value: Any, parent: dict[str, Any]) -> Any:
    """A list parameter's value as a list of items where it can be read here: a literal
    "a,b", a `Fn::Join` on ",", or the `Value` of a parent SSM parameter holding either."""
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target, attribute = _get_att(value["Fn::GetAtt"])
        resource = parent["Resources"].get(target, {})
        if resource.get("Type") == "AWS::SSM::Parameter" and attribute == "Value":
            return _as_list(resource["Properties"]["Value"], parent)
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, items = value["Fn::Join"]
        if separator == "," and isinstance(items, list):
            return items
    return value


def _get_att(value: Any) -> tuple[str, str]:
    if isinstance(value, str):
        target, _, attribute = value.partition(".")
        return target, attribute
    return str(value[0]), str(value[1])


class _Renamer:
    """Rewrites a nested template's node into the parent's names."""

    def __init__(self, prefix: str, parameters: dict[str, Any]) -> None:
        self.prefix = prefix
        self.parameters = parameters

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            intrinsic: Callable[[Any], Any] | None = {
                "Ref": self._ref,
                "Fn::GetAtt": self._get_att,
                "Fn::Sub": self._sub,
                "Fn::Select": self._select,
                "Fn::Equals": lambda v: _equals(self(v[0]), self(v[1])),
                "Fn::If": self._if,
                "Condition": lambda v: {"Condition": self.prefix + v},
            }.get(key)
            if intrinsic is not None:
                return intrinsic(value)
        renamed = {key: self(value) for key, value in node.items()}
        if isinstance(renamed.get("DependsOn"), str | list):
            depends = renamed["DependsOn"]
            names = [depends] if isinstance(depends, str) else depends
            renamed["DependsOn"] = [self.prefix + name for name in names]
        return renamed

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return copy.deepcopy(self.parameters[name])
        if name.startswith("AWS::"):
            return {"Ref": name}
        return {"Ref": self.prefix + name}  # a resource, or one SAM generates (FunctionRole)

    def _get_att(self, value: Any) -> Any:
        target, attribute = _get_att(value)
        return {"Fn::GetAtt": [self.prefix + target, attribute]}

    def _if(self, value: Any) -> Any:
        name, *branches = value
        return {"Fn::If": [self.prefix + name, *(self(b) for b in branches)]}

    def _select(self, value: Any) -> Any:
        index, items = self(value[0]), self(value[1])
        if isinstance(items, list) and str(index).isdigit():
            return items[int(index)]
        return {"Fn::Select": [index, items]}

    def _sub(self, value: Any) -> Any:
        text, variables = (value, {}) if isinstance(value, str) else value
        variables = {name: self(v) for name, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            target = name.split(".")[0]
            if name in variables or target.startswith("AWS::"):
                return match.group(0)
            if name in self.parameters:
                passed = self.parameters[name]
                if isinstance(passed, str | int | float):
                    return str(passed)
                if isinstance(passed, dict) and isinstance(passed.get("Fn::Sub"), str):
                    return str(passed["Fn::Sub"])  # the parent's own `${...}` stay as they are
                variables[name] = passed
                return match.group(0)
            return "${" + self.prefix + name + "}"

        text = _SUB_VARIABLE.sub(replace, text)
        if not _SUB_VARIABLE.search(text) and not variables:
            return text
        return {"Fn::Sub": [text, variables] if variables else text}


def _equals(left: Any, right: Any) -> dict[str, Any]:
    """`Fn::Equals`, decided here where a side is a passed value CloudFormation would not
    allow in a condition (a nested stack sees a parameter; inlined, it is a resource's `Sub`).
    Only a comparison with "" of a `Sub` that has text besides its variables is decided."""
    for one, other in ((left, right), (right, left)):
        sub = one.get("Fn::Sub") if isinstance(one, dict) else None
        text = sub if isinstance(sub, str) else sub[0] if isinstance(sub, list) else None
        if other == "" and text is not None and _SUB_VARIABLE.sub("", text):
            return {"Fn::Equals": ["sub", ""]}
    return {"Fn::Equals": [left, right]}


def _static(condition: Any) -> bool | None:
    """A condition's value when it compares literals only (`Fn::Not`, `Fn::Equals`), else
    None: a worker block's conditions are on what the block passes, mostly literals."""
    if not isinstance(condition, dict) or len(condition) != 1:
        return None
    ((key, value),) = condition.items()
    if key == "Fn::Not":
        inner = _static(value[0])
        return None if inner is None else not inner
    if key == "Fn::Equals" and all(isinstance(v, str | int | float) for v in value):
        return str(value[0]) == str(value[1])
    return None


def _decide_ifs(template: dict[str, Any]) -> dict[str, Any]:
    """Each `Fn::If` on a condition decided by literals, replaced by its branch (as
    CloudFormation would resolve it), so the template reads as deployed."""
    decided = {
        name: value
        for name, condition in template.get("Conditions", {}).items()
        if (value := _static(condition)) is not None
    }

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        branches = node.get("Fn::If") if len(node) == 1 else None
        if isinstance(branches, list) and branches[0] in decided:
            return walk(branches[1] if decided[branches[0]] else branches[2])
        return {key: walk(value) for key, value in node.items()}

    return {**template, "Resources": walk(template["Resources"])}


def _rebase_code(resource: dict[str, Any], nested_dir: Path, root: Path) -> None:
    """A nested function's `CodeUri` is relative to its template; make it relative to root."""
    properties = resource.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        uri = properties.get(key)
        if isinstance(uri, str) and not uri.startswith("s3://"):
            properties[key] = (nested_dir / uri).resolve().relative_to(root.resolve()).as_posix()


def _replace_output_refs(template: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """`!GetAtt Email.Outputs.QueueArn` in the parent -> the nested output's own value."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::GetAtt"}:
            target, attribute = _get_att(node["Fn::GetAtt"])
            key = f"{target}.{attribute}"
            if key in outputs:
                return copy.deepcopy(outputs[key])
        if set(node) == {"Fn::Sub"}:
            return {"Fn::Sub": _sub_outputs(node["Fn::Sub"], outputs)}
        return {key: walk(value) for key, value in node.items()}

    return {key: walk(value) for key, value in template.items()}


def _sub_outputs(value: Any, outputs: dict[str, Any]) -> Any:
    text, variables = (value, {}) if isinstance(value, str) else value
    for name in _SUB_VARIABLE.findall(text):
        if name in outputs:
            alias = name.replace(".", "")
            variables = {**variables, alias: outputs[name]}
            text = text.replace("${" + name + "}", "${" + alias + "}")
    return [text, variables] if variables else text
