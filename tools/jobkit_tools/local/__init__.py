"""The local stack: `template.yaml` on moto's server, each function in its own process.

`run_dev` is `jobkit dev`; `LocalStack` is the same stack as a context manager, for tests.
They load lazily: `jobkit_tools.testing` imports `jobkit_tools.local.scheduler` alone, and
should not pay for samtranslator (a second) or need it installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit_tools.local.dev import run_dev
    from jobkit_tools.local.local_stack import LocalStack
    from jobkit_tools.local.stack import LocalStackError

__all__ = ["LocalStack", "LocalStackError", "run_dev"]

_HOMES = {"LocalStack": "local_stack", "run_dev": "dev", "LocalStackError": "stack"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
