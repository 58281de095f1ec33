"""template.yaml made ready for moto: read, checked, code packaged, SAM translated."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import Path
from typing import Any, cast

import boto3
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import (
    to_py27_compatible_template,
    undo_mark_unicode_str_in_template,
)
from samtranslator.yaml_helper import intrinsics_multi_constructor

from jobkit_tools.local.endpoint import REGION, LocalStackError
from jobkit_tools.local.nested import inline_applications

log = logging.getLogger("jobkit.local")


ARTIFACT_BUCKET = "jobkit-local-artifacts"
# The intrinsic functions a template node may be (a one-key mapping of one of these).
INTRINSICS = {
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
        else:
            problems += _value_problems(name, str(value), spec)
    if problems:
        raise LocalStackError("invalid parameters: " + "; ".join(problems))


def deployed_template(path: Path) -> dict[str, Any]:
    """A template as CloudFormation deploys it: read, each local worker block inlined
    (`Email` + `Queue` -> `EmailQueue`; see nested.py). Tests and benchmarks read this view."""
    template = load_template(path)
    return inline_applications(template, path.resolve().parent, load_template, check_parameters)


def _value_problems(name: str, value: str, spec: dict[str, Any]) -> list[str]:
    """What CloudFormation would refuse in one parameter's value."""
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        return [f"{name}={value!r}: not one of {allowed}"]
    if spec.get("Type") == "Number":
        return _number_problems(name, value, spec)
    if spec.get("Type") != "String":
        return []
    problems = []
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        problems.append(f"{name}: shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        problems.append(f"{name}: longer than MaxLength {spec['MaxLength']}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        problems.append(f"{name}={value!r}: does not match {pattern}")
    return problems


def _number_problems(name: str, value: str, spec: dict[str, Any]) -> list[str]:
    try:
        number = float(value)
    except ValueError:
        return [f"{name}={value!r}: not a number"]
    if "MinValue" in spec and number < float(spec["MinValue"]):
        return [f"{name}={value}: below MinValue {spec['MinValue']}"]
    if "MaxValue" in spec and number > float(spec["MaxValue"]):
        return [f"{name}={value}: above MaxValue {spec['MaxValue']}"]
    return []


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


def package(template: dict[str, Any], root: Path, s3: Any) -> dict[str, Path]:
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


def key_policies_as_json(cfn: dict[str, Any]) -> None:
    """Hand moto each KMS key's policy as the JSON string its API stores, not an object.

    Moto's CloudFormation keeps `KeyPolicy` as given, and every later call on the key (even
    `DescribeKey`) then fails parsing it; `Fn::ToJsonString` (which moto resolves) serializes it
    after its intrinsics are resolved.
    """
    for resource in cfn["Resources"].values():
        properties = resource.get("Properties", {})
        policy = properties.get("KeyPolicy")
        written_out = isinstance(policy, dict) and not set(policy) & INTRINSICS
        if resource.get("Type") == "AWS::KMS::Key" and written_out:
            properties["KeyPolicy"] = {"Fn::ToJsonString": policy}
