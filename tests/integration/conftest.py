"""Fixtures of the integration tests."""

from __future__ import annotations

import sys

import pytest

from jobkit.observability import logger


@pytest.fixture
def stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> pytest.CaptureFixture[str]:
    """capsys, with the Powertools Logger writing to it: the Logger's handler holds the
    sys.stdout of the time jobkit was imported, so make it write to whatever stdout is now."""
    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())
    return capsys


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()
