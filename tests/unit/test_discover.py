"""The CLI finds its project from any folder inside it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jobkit import jobs
from jobkit.jobs import registered_job_types
from jobkit_tools.cli_base import load_types
from jobkit_tools.discover import project_root

JOBS = """
from pydantic import BaseModel

from jobkit.jobs import JobType


class Ping(BaseModel):
    n: int


PING = JobType("probe.ping_from_subfolder", Ping, queue="probe")
"""


def test_a_worker_s_job_types_are_found_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a project with a worker whose job types live in functions/probe/probe_jobs.py
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    worker = tmp_path / "functions" / "probe"
    worker.mkdir(parents=True)
    (worker / "probe_jobs.py").write_text(JOBS)
    deep = tmp_path / "docs" / "notes"
    deep.mkdir(parents=True)
    # When the CLI loads the job types from a folder two levels down
    monkeypatch.chdir(deep)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "probe_jobs", raising=False)
    monkeypatch.setattr(jobs, "_REGISTRY", dict(jobs._REGISTRY))  # the type goes with the test
    load_types()
    # Then the project is the folder with the template, and the worker's type is declared
    assert project_root() == tmp_path.resolve()
    assert "probe.ping_from_subfolder" in registered_job_types()


def test_outside_any_project_the_folder_itself_is_the_root(tmp_path: Path) -> None:
    # Given a folder with no template.yaml in it or above it
    assert not any((f / "template.yaml").exists() for f in (tmp_path, *tmp_path.parents))
    # Then the root is that folder
    assert project_root(tmp_path) == tmp_path.resolve()
