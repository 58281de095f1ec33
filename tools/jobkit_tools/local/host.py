"""The function host: one process = one warm Lambda "container" of one function.

Hand-written (no library runs a Lambda handler outside Docker the way the runtime does): it is
the local counterpart of Lambda's Python runtime interface client. Run by path with
`python -P host.py --handler app.lambda_handler --code-dir DIR [--layer-dir DIR ...]`, so it
imports nothing but the standard library before the function's own code, as on Lambda.

Protocol: one JSON object per line. The host answers `{"ready": true}` after init (or
`{"ready": false, "error": {...}}`), then reads invocations `{"event", "request_id",
"deadline_ms", "invoked_function_arn"}` from stdin and answers each with `{"result": ...}` or
`{"error": {"errorType", "errorMessage", "stackTrace"}}`. The channel is the process's original
stdout; fd 1 is then pointed at stderr, so whatever the function prints is a log line and can
never corrupt an answer. EOF on stdin ends the process, so a container never outlives its
supervisor. The supervisor enforces the timeout by killing the process group.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, TextIO


class LambdaContext:
    """The attributes and method of the Lambda context object that handlers use."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = invoked_function_arn
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the supervisor kills this invocation."""
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(error: BaseException) -> dict[str, Any]:
    """Lambda's error shape for an exception raised by the handler."""
    return {
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(error),
    }


def _send(channel: TextIO, message: dict[str, Any]) -> None:
    try:
        line = json.dumps(message)
    except (TypeError, ValueError) as error:  # a result that is not JSON, as Lambda reports it
        line = json.dumps(
            {"error": {"errorType": "Runtime.MarshalError", "errorMessage": str(error)}}
        )
    channel.write(line + "\n")
    channel.flush()


def main(argv: list[str] | None = None) -> int:
    """Init the function, then serve invocations until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--layer-dir", action="append", default=[])
    args = parser.parse_args(argv)

    # The answer channel is the original stdout; the function's prints go to stderr (its log).
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Lambda's order: the function's code (/var/task) first, then the layers (/opt/python).
    sys.path[:0] = [args.code_dir, *args.layer_dir]
    os.chdir(args.code_dir)

    module_name, _, function_name = args.handler.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:
        traceback.print_exc()
        _send(channel, {"ready": False, "error": _error(error)})
        return 1
    _send(channel, {"ready": True})

    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(
            request["request_id"], request["deadline_ms"], request["invoked_function_arn"]
        )
        try:
            result = handler(request["event"], context)
        except Exception as error:
            sys.stderr.write(f"[ERROR] {type(error).__name__}: {error}\n")
            traceback.print_exc()
            _send(channel, {"error": _error(error)})
        else:
            _send(channel, {"result": result})
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
