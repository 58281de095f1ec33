"""Adapter over Lambda's event source mappings: the switch between a queue and its worker.

Pausing a queue disables the mapping (`Enabled: false`): its messages wait in SQS, none is
received, nothing is lost; resuming enables it again. Its public calls raise `ServiceError`
for a failed AWS call.
"""

from __future__ import annotations

from typing import Any

from jobkit import aws


@aws.service_errors
def of_queue(queue_arn: str) -> list[dict[str, Any]]:
    """The event source mappings that read the queue (usually one): UUID, State."""
    lam: Any = aws.client("lambda")
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"EventSourceArn": queue_arn}
    while True:
        response = lam.list_event_source_mappings(**kwargs)
        found += response.get("EventSourceMappings", [])
        if not response.get("NextMarker"):
            return found
        kwargs["Marker"] = response["NextMarker"]


@aws.service_errors
def set_enabled(uuid: str, enabled: bool) -> str:
    """Enable or disable one mapping; its state as Lambda answers (e.g. Disabling)."""
    lam: Any = aws.client("lambda")
    return str(lam.update_event_source_mapping(UUID=uuid, Enabled=enabled)["State"])
