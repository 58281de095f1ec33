"""Powertools Logger and Metrics shared by every function.

The service name comes from POWERTOOLS_SERVICE_NAME (each function sets its own in
template.yaml); producers outside Lambda log as "jobkit". CloudWatch Logs bills every byte, so
lines leave out what the log group already says (the function's name, ARN and memory) and the
source location; `Worker.handle` drops the Lambda context keys it does not need.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jobkit"), use_rfc3339=True, location=None
)
# Lambda context keys `inject_lambda_context` adds that the log group already tells.
REDUNDANT_KEYS = ["function_name", "function_arn", "function_memory_size"]
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jobkit"))
