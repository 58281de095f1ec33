"""Powertools Logger and Metrics shared by every function.

The service name comes from POWERTOOLS_SERVICE_NAME (each function sets its own in
template.yaml); producers outside Lambda log as "jobkit".
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jobkit"), use_rfc3339=True)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jobkit"))
