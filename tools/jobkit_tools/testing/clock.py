"""The harness's virtual clock: its first moment, and when something can happen next.

SQS does not say when a delayed or hidden message shows again, so the harness learns it from
the calls that set it: a hook on botocore's `provide-client-params` of `SendMessage(Batch)`,
`ChangeMessageVisibility(Batch)` and `ReceiveMessage` on every client it watches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from jobkit_tools.testing.models import HarnessError

# A Monday, 09:00 UTC: fixed, so that cron schedules and weekdays are the same in every run.
DEFAULT_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Moto shows a message whose visibility or delay ends at t only strictly after t (as SQS may).
_MARGIN = timedelta(milliseconds=1)
_TIMED_CALLS = (
    "SendMessage",
    "SendMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ReceiveMessage",
)


def seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise HarnessError("use a timezone-aware datetime (e.g. datetime(..., tzinfo=UTC))")
    return moment.astimezone(UTC)


class Wakes:
    """The moments a queue may show a message, learned from the SQS calls of watched clients.

    `visibility_timeout` gives the queues' default, which a `ReceiveMessage` without its own
    hides messages for.
    """

    def __init__(self, visibility_timeout: Callable[[], int]) -> None:
        self._visibility_timeout = visibility_timeout
        self.pending: list[tuple[str, datetime]] = []  # (queue URL, when it may show a message)
        self.hidden: set[str] = set()  # receipt handles hidden again during a batch
        self._watched: list[Any] = []

    def hook(self, events: Any) -> None:
        """Listen to the timed calls on a botocore event system (a client's or a session's)."""
        for name in _TIMED_CALLS:
            events.register(f"provide-client-params.sqs.{name}", self.on_timed_call)

    def watch(self, client: Any) -> None:
        """Listen to a boto3 SQS client's timed calls (once, however often it is asked)."""
        if any(client is known for known in self._watched):
            return
        self.hook(client.meta.events)
        self._watched.append(client)

    def add(self, queue_url: str, moment: datetime) -> None:
        self.pending.append((queue_url, moment))

    def forget(self) -> None:
        self._watched.clear()
        self.pending.clear()

    def next(
        self, now: datetime, queue_urls: set[str], fire: datetime | None
    ) -> tuple[datetime, datetime] | None:
        """The first moment after now when one of `queue_urls` may show a message or the next
        schedule fires (`fire`), and the moment to move the clock to for it (1 ms later for a
        message)."""
        self.pending = [(url, at) for url, at in self.pending if at + _MARGIN > now]
        moments = [(at, at + _MARGIN) for url, at in self.pending if url in queue_urls]
        if fire is not None and fire > now:
            moments.append((fire, fire))
        return min(moments, default=None)

    def on_timed_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """botocore's `provide-client-params`: note when a message may show (returns None, so
        the call goes on unchanged)."""
        url = str(params.get("QueueUrl", ""))
        now = datetime.now(UTC)  # the virtual clock
        name = model.name
        if name == "SendMessage":
            delays = [params.get("DelaySeconds", 0)]
        elif name == "SendMessageBatch":
            delays = [e.get("DelaySeconds", 0) for e in params.get("Entries", [])]
        elif name == "ChangeMessageVisibility":
            delays = [params.get("VisibilityTimeout", 0)]
            self.hidden.add(str(params.get("ReceiptHandle")))
        elif name == "ChangeMessageVisibilityBatch":
            delays = [e.get("VisibilityTimeout", 0) for e in params.get("Entries", [])]
            self.hidden.update(str(e.get("ReceiptHandle")) for e in params.get("Entries", []))
        else:  # ReceiveMessage
            delays = [params.get("VisibilityTimeout", self._visibility_timeout())]
        # A delay of 0 shows a message at once; a visibility of 0 shows it just after now.
        lowest = 1 if name.startswith("SendMessage") else 0
        for value in {int(s or 0) for s in delays}:
            if value >= lowest:
                self.add(url, now + timedelta(seconds=value))
