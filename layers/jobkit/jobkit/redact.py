"""Email addresses are personal data: mask them in everything jobkit logs or stores as an error."""

from __future__ import annotations

import re

_EMAIL = re.compile(
    r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-])[A-Za-z0-9.-]*(\.[A-Za-z]{2,})"
)


def mask_email(address: str) -> str:
    """`alice@example.com` -> `a***@e***.com`: enough to tell addresses apart in a log."""
    return redact(address)


def redact(text: str, limit: int = 1000) -> str:
    """Mask every email address in `text` and cut it to `limit` characters."""
    masked = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}***{m.group(3)}", text)
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"
