"""Email addresses are personal data: mask them in everything jobkit logs or stores as an error."""

from __future__ import annotations

import re

# An address's local part, domain labels and top-level domain, in any script (`\w` is Unicode:
# `josé@example.com`, `ada@münchen.de`). A match may only start where a local part starts (the
# look-behind): inside a long run of address characters every other start fails at once, so a
# text is scanned in linear time instead of trying the whole run again from each position.
_LOCAL = r"[\w.%+'-]"
_EMAIL = re.compile(rf"(?<!{_LOCAL})({_LOCAL}){_LOCAL}*@([\w-])[\w.-]*(\.\w{{2,}})")
# The longest address there is (RFC 5321): text cut this far past the limit still has every
# address that reaches into the kept part whole, so it is masked before the final cut.
_ADDRESS_MAX = 254


def mask_email(address: str) -> str:
    """`alice@example.com` -> `a***@e***.com`: enough to tell addresses apart in a log."""
    return redact(address)


def redact(text: str, limit: int = 1000) -> str:
    """Mask every email address in `text` and cut it to `limit` characters.

    Only the first `limit` characters are looked at (a 1 MB exception message costs what 1 KB
    does), plus enough beyond them that an address straddling the cut is still recognised and
    masked whole; nothing of the text past the cut is kept unmasked."""
    window = text[: limit + _ADDRESS_MAX]
    parts: list[str] = []
    kept = 0  # how far into `window` the output has got
    for match in _EMAIL.finditer(window):
        if match.start() >= limit:
            break
        parts += [window[kept : match.start()], _mask(match)]
        kept = match.end()
    if kept < limit:
        parts.append(window[kept:limit])
    masked = "".join(parts)
    if len(text) <= limit and len(masked) <= limit:
        return masked
    return masked[: limit - 1] + "…"


def _mask(match: re.Match[str]) -> str:
    return f"{match.group(1)}***@{match.group(2)}***{match.group(3)}"
