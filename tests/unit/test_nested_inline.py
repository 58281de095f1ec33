"""The local stack inlines a worker block (a local nested application) as CloudFormation would
deploy it: names prefixed, parameters passed, outputs reachable from the parent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from jobkit_tools.local.nested import NestedTemplateError, inline_applications
from jobkit_tools.local.stack import check_parameters, load_template

CHILD = """
Parameters:
  Name: {Type: String, AllowedPattern: "^[a-z]+$"}
  Size: {Type: Number, Default: 3, MaxValue: 10}
  Shared: {Type: CommaDelimitedList}
  Extra: {Type: String, Default: ""}
  Age: {Type: String, Default: ""}
Conditions:
  HasExtra: !Not [!Equals [!Ref Extra, ""]]
  HasAge: !Not [!Equals [!Ref Age, ""]]
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub ${Name}-q
      DelaySeconds: !Ref Size
      MessageRetentionPeriod: !If [HasAge, !Ref Age, 60]
      Tags: [{Key: table, Value: !Select [1, !Ref Shared]}]
  Policy:
    Type: AWS::IAM::Policy
    Condition: HasExtra
    Properties:
      PolicyDocument: !Sub '{"Statement": ${Extra}}'
      Roles: [!Ref FunctionRole]
Outputs:
  QueueArn: {Value: !GetAtt Queue.Arn}
"""


def parent(parameters: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "Resources": {
                "Table": {"Type": "AWS::DynamoDB::Table"},
                "Settings": {
                    "Type": "AWS::SSM::Parameter",
                    "Properties": {"Value": {"Fn::Join": [",", ["stack", {"Ref": "Table"}]]}},
                },
                "Mail": {
                    "Type": "AWS::Serverless::Application",
                    "Properties": {"Location": "child.yaml", "Parameters": parameters},
                },
                "Rule": {
                    "Type": "AWS::Events::Rule",
                    "Properties": {"Target": {"Fn::GetAtt": ["Mail", "Outputs.QueueArn"]}},
                },
            }
        }
    )


def inline(tmp_path: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / "child.yaml").write_text(CHILD)
    (tmp_path / "template.yaml").write_text(parent(parameters))
    template = load_template(tmp_path / "template.yaml")
    return inline_applications(template, tmp_path, load_template, check_parameters)


SHARED = {"Fn::GetAtt": ["Settings", "Value"]}


def test_a_block_becomes_its_resources_named_after_it(tmp_path: Path) -> None:
    # When a block is inlined with its name, a list from the parent's SSM parameter and extra
    inlined = inline(tmp_path, {"Name": "mail", "Shared": SHARED, "Extra": "[{}]"})
    resources = inlined["Resources"]
    # Then its resources are prefixed with the block's id, and the block itself is gone
    assert {"MailQueue", "MailPolicy"} <= set(resources)
    assert "Mail" not in resources
    queue = resources["MailQueue"]["Properties"]
    # And parameters are what the block passed (a literal name into the Sub, the default size)
    assert queue["QueueName"] == "mail-q"
    assert queue["DelaySeconds"] == 3
    # And an item of the shared list is the parent's own intrinsic
    assert queue["Tags"][0]["Value"] == {"Ref": "Table"}
    # And references inside are renamed, a SAM-made role included
    assert resources["MailPolicy"]["Properties"]["Roles"] == [{"Ref": "MailFunctionRole"}]
    assert resources["MailPolicy"]["Condition"] == "MailHasExtra"
    # And the parent's `Outputs.X` of the block is the nested output's value
    assert resources["Rule"]["Properties"]["Target"] == {"Fn::GetAtt": ["MailQueue", "Arn"]}
    assert inlined["Outputs"]["MailQueueArn"]["Value"] == {"Fn::GetAtt": ["MailQueue", "Arn"]}


def test_a_condition_on_a_passed_value_is_decided(tmp_path: Path) -> None:
    # Given Extra passed as a Sub naming a parent resource (no condition may refer to one)
    extra = {"Fn::Sub": '[{"Resource": "${Table.Arn}"}]'}
    inlined = inline(tmp_path, {"Name": "mail", "Shared": SHARED, "Extra": extra})
    # Then the condition compares literals only, and holds
    (equals,) = inlined["Conditions"]["MailHasExtra"]["Fn::Not"]
    left, right = equals["Fn::Equals"]
    assert isinstance(left, str) and left != right
    # And the policy's Sub holds the parent's text, its ${Table.Arn} left to the stack
    document = inlined["Resources"]["MailPolicy"]["Properties"]["PolicyDocument"]
    assert document == {"Fn::Sub": '{"Statement": [{"Resource": "${Table.Arn}"}]}'}


@pytest.mark.parametrize(("age", "retention"), [(None, 60), ("120", "120")])
def test_a_condition_on_a_literal_is_resolved_as_deployed(
    tmp_path: Path, age: str | None, retention: Any
) -> None:
    # Given a block that passes Age, or leaves it to its default ""
    given = {"Name": "mail", "Shared": SHARED} | ({"Age": age} if age else {})
    # When inlined, Then the `Fn::If` on it reads as CloudFormation resolves it
    queue = inline(tmp_path, given)["Resources"]["MailQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == retention


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"Name": "Mail-1", "Shared": SHARED}, "does not match"),
        ({"Name": "mail", "Shared": SHARED, "Size": 11}, "above MaxValue"),
        ({"Name": "mail", "Shared": SHARED, "Colour": "red"}, "no such parameter Colour"),
        ({"Shared": SHARED}, "Name"),
    ],
)
def test_a_block_the_worker_template_would_refuse_is_refused(
    tmp_path: Path, parameters: dict[str, Any], says: str
) -> None:
    with pytest.raises(NestedTemplateError, match=says) as error:
        inline(tmp_path, parameters)
    # And the message names the block
    assert str(error.value).startswith("Mail:")
