"""jobkit_tools.testing builds the stack the way template.yaml declares it, and ships unused."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from jobkit_tools.testing import (
    APPLICATIONS_TABLE,
    JOB_LOG_TABLE,
    JOB_LOG_TTL,
    PAGES_TABLE,
    Harness,
)
from tests.conftest import ROOT, resolved, template

RESOURCES: dict[str, Any] = template()["Resources"]


def _by_name(attributes: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {a[key]: a for a in attributes}


def test_the_harness_job_log_is_the_template_jobs_table() -> None:
    # Given the job log the harness creates and the one template.yaml deploys
    table = RESOURCES["JobsTable"]["Properties"]
    # Then keys, attribute types, indexes, billing and TTL are the same
    assert JOB_LOG_TABLE["KeySchema"] == table["KeySchema"]
    assert _by_name(JOB_LOG_TABLE["AttributeDefinitions"], "AttributeName") == _by_name(
        table["AttributeDefinitions"], "AttributeName"
    )
    assert _by_name(JOB_LOG_TABLE["GlobalSecondaryIndexes"], "IndexName") == _by_name(
        table["GlobalSecondaryIndexes"], "IndexName"
    )
    assert JOB_LOG_TABLE["BillingMode"] == table["BillingMode"]
    assert table["TimeToLiveSpecification"] == JOB_LOG_TTL
    assert set(JOB_LOG_TABLE) == {
        "KeySchema",
        "AttributeDefinitions",
        "GlobalSecondaryIndexes",
        "BillingMode",
    }


def test_the_harness_pages_table_is_the_template_one() -> None:
    table = RESOURCES["JobPagesTable"]["Properties"]
    for key, value in PAGES_TABLE.items():
        assert table[key] == value, key


def test_the_harness_applications_table_is_the_template_one() -> None:
    table = RESOURCES["ApplicationsTable"]["Properties"]
    for key, value in APPLICATIONS_TABLE.items():
        assert table[key] == value, key


def test_the_harness_queues_default_to_the_email_queues_settings() -> None:
    queue = RESOURCES["EmailQueue"]["Properties"]
    harness = Harness()
    assert harness.visibility_timeout == resolved(queue["VisibilityTimeout"])
    assert harness.max_receive_count == queue["RedrivePolicy"]["maxReceiveCount"]


def test_nothing_in_the_runtime_imports_the_harness() -> None:
    # Given every module of the layers and of the functions (the harness is in the tools)
    sources = [*(ROOT / "layers").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    assert sources
    # Then none imports it (it needs moto and time-machine, which Lambda does not have)
    importers = [str(p.relative_to(ROOT)) for p in sources if _imports_testing(p)]
    assert importers == []


def _imports_testing(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(
            a.name.startswith("jobkit_tools.testing") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (
            (node.module or "").startswith("jobkit_tools.testing")
            or (node.module == "jobkit_tools" and any(a.name == "testing" for a in node.names))
        ):
            return True
    return False
