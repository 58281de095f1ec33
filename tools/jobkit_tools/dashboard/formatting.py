"""How the dashboard writes times, ages and payloads (Jinja filters); pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jobkit.redact import redact


def moment(value: datetime | None) -> str:
    """`2026-11-27 18:30:05` (UTC), or `-`."""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if value else "-"


def duration(seconds: float | None) -> str:
    """`4m 10s`, `2h 5m`, `3d 4h`; `-` when unknown."""
    if seconds is None:
        return "-"
    whole = round(abs(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """`4m 10s ago`, `in 3m 0s`, or `-`."""
    if value is None:
        return "-"
    delta = (value - (now or datetime.now(UTC))).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def masked_json(value: Any) -> str:
    """Indented JSON with every email address masked (`jobkit.redact`), as the CLI shows it."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return redact(text, limit=len(text))


def masked(value: Any) -> str:
    """A value shown to an operator (an error, a result): text with addresses masked."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else masked_json(value)
    return redact(text, limit=max(len(text), 1))
