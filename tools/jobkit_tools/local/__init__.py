"""The local stack: `template.yaml` on moto's server, each function in its own process.

`run_dev` is `jobkit dev`; `LocalStack` is the same stack as a context manager, for tests.
"""

from jobkit_tools.local.dev import LocalStack, run_dev
from jobkit_tools.local.stack import LocalStackError

__all__ = ["LocalStack", "LocalStackError", "run_dev"]
