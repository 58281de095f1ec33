"""CPU accounting around AWS calls: how much of a run is botocore + moto, and how much moto."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class CallTimer:
    """CPU seconds spent inside `BaseClient._make_api_call` (the whole AWS call: botocore's
    serialising and parsing plus moto's in-process "server") and inside moto's stubber alone."""

    api: float = 0.0
    moto: float = 0.0
    calls: int = 0
    _depth: int = 0

    def reset(self) -> None:
        self.api = self.moto = 0.0
        self.calls = 0


@contextmanager
def timed_aws_calls() -> Iterator[CallTimer]:
    """Patch botocore's `_make_api_call` and moto's request handler with CPU timers."""
    from botocore.client import BaseClient
    from moto.core.botocore_stubber import BotocoreStubber

    timer = CallTimer()
    clock = time.process_time
    make_api_call = BaseClient._make_api_call  # type: ignore[attr-defined]
    process_request = BotocoreStubber.process_request

    def timed_call(self: Any, operation_name: str, api_params: Any) -> Any:
        if timer._depth:
            return make_api_call(self, operation_name, api_params)
        timer._depth += 1
        start = clock()
        try:
            return make_api_call(self, operation_name, api_params)
        finally:
            timer.api += clock() - start
            timer.calls += 1
            timer._depth -= 1

    def timed_request(self: Any, request: Any) -> Any:
        start = clock()
        try:
            return process_request(self, request)
        finally:
            timer.moto += clock() - start

    BaseClient._make_api_call = timed_call  # type: ignore[attr-defined]
    BotocoreStubber.process_request = timed_request  # type: ignore[method-assign]
    try:
        yield timer
    finally:
        BaseClient._make_api_call = make_api_call  # type: ignore[attr-defined]
        BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
