"""The Jobs HTTP API's OpenAPI document (`jobkit openapi`): valid OpenAPI 3.1, an enqueue route
with each declared job type's payload schema, SigV4 on every route, and a request built from
the document alone (a client generator's view) is accepted by the API."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from typer.testing import CliRunner

from jobkit.jobs import registered_job_types
from jobkit_apps.http_api.resolver import load_job_types
from jobkit_tools.cli import app
from tests.conftest import Stack

from .http_api_support import Api, log_items

load_job_types()
# The built-in apps' job types (other test modules may have declared more meanwhile)
BUILT_IN = {
    name: job_type
    for name, job_type in registered_job_types().items()
    if job_type.payload.__module__.startswith("jobkit_apps.")
}
# Strings a generated value tries, for a schema with a pattern: the first that matches.
CANDIDATES = ["x1", "EUR", "https://example.com/x"]
FORMATS = {
    "email": "ada@example.com",
    "uri": "https://example.com/a",
    "date-time": "2030-01-01T09:00:00Z",
    "date": "2030-01-01",
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `jobkit openapi -o FILE` writes (its stdout is the same document)."""
    out = tmp_path_factory.mktemp("openapi") / "openapi.json"
    result = CliRunner().invoke(app, ["openapi", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    printed = CliRunner().invoke(app, ["openapi"])
    assert json.loads(printed.stdout) == written
    return written  # type: ignore[no-any-return]


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _sample(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A value of `schema` with its required fields only, from the document alone."""
    schema = _resolve(schema, document)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    if options:
        return _sample(options[0], document)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _sample(properties[name], document) for name in schema.get("required", [])}
    if kind == "array":
        return [_sample(schema["items"], document)] * max(schema.get("minItems", 1), 1)
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), schema.get("exclusiveMinimum", 0) + 1)
    if kind == "boolean":
        return True
    if "format" in schema:
        return FORMATS[schema["format"]]
    pattern = schema.get("pattern")
    return next(c for c in CANDIDATES if pattern is None or re.search(pattern, c))


def _enqueue_schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    operation = document["paths"][f"/types/{name}/jobs"]["post"]
    return operation["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_and_every_route_needs_sigv4(
    document: dict[str, Any],
) -> None:
    # Then it passes the OpenAPI 3.1 schema
    validate(document)
    # And every operation is under the SigV4 requirement (the document's default), and none
    # clears it
    assert document["security"] == [{"sigv4": []}]
    scheme = document["components"]["securitySchemes"]["sigv4"]
    assert (scheme["in"], scheme["name"]) == ("header", "Authorization")
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert operations and all("security" not in op for op in operations)
    # And every error answer is the one error shape
    errors = [
        response["content"]["application/json"]["schema"]
        for op in operations
        for status, response in op["responses"].items()
        if status in ("400", "404", "409", "413", "422")
    ]
    assert errors and all(e == {"$ref": "#/components/schemas/ErrorBody"} for e in errors)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_job_type_has_an_enqueue_route_with_its_payload_schema(
    document: dict[str, Any], name: str
) -> None:
    # Given a declared job type's own JSON Schema (`jobkit schema`)
    own = BUILT_IN[name].json_schema()
    # When its enqueue route's body schema is read from the document
    body = _resolve(_enqueue_schema(document, name), document)
    payload = _resolve(body["properties"]["payload"], document)
    # Then the payload is required, with the type's own fields and required ones
    assert body["required"] == ["payload"]
    assert set(payload["properties"]) == set(own["properties"])
    assert set(payload.get("required", [])) == set(own.get("required", []))
    # And a value built from the document's schema passes that schema
    schema = {**_enqueue_schema(document, name), "components": document["components"]}
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(
        {"payload": _sample(payload, document)}
    )


@pytest.mark.parametrize("name", sorted(n for n, t in BUILT_IN.items() if t.queue == "email"))
def test_a_request_built_from_the_document_alone_is_accepted(
    document: dict[str, Any], stack: Stack, name: str
) -> None:
    # Given a request a generated client would send: the path and the required fields of the
    # type's body schema, as the document describes them
    body = _sample(_enqueue_schema(document, name), document)
    path = next(p for p in document["paths"] if p == f"/types/{name}/jobs")
    # When it is sent
    status, job = Api.over(stack).call("POST", path, body)
    # Then the API takes it: the job is created, in the document's Job shape
    assert status == 201, job
    assert set(job) == set(document["components"]["schemas"]["Job"]["properties"])
    assert [item["pk"]["S"] for item in log_items()] == [job["id"]]


def test_an_output_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["openapi", "-o", str(tmp_path / "missing" / "x.json")])
    assert result.exit_code == 2 and result.exception is not None
    assert isinstance(result.exception, SystemExit)
    assert "No such file or directory" in result.output
