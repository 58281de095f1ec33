"""Powertools Logger and Metrics shared by every function (service name from the environment)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="jobkit", use_rfc3339=True)
metrics = Metrics(namespace="jobkit")
