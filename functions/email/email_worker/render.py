"""Templates to subject, HTML and text. Autoescape guards the HTML against payload fields
(an inviter's name is user input); StrictUndefined turns a missing field into an error
instead of an email with a hole in it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobkit.errors import PermanentError

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES = Path(__file__).resolve().parent / "templates"


class TemplateRenderError(PermanentError):
    """A template is missing or needs a field the payload lacks: retrying cannot help."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@lru_cache(maxsize=1)
def environment() -> Environment:
    """One Jinja2 environment per container: it caches compiled templates."""
    # Lazy (cold start): Jinja2 loads with the first email rendered.
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(email: str, fields: Mapping[str, Any]) -> RenderedEmail:
    """Render `templates/<email>/{subject.txt, body.html, body.txt}` with `fields`."""
    # Lazy (cold start): Jinja2 loads with the first email rendered.
    from jinja2 import TemplateError

    env = environment()
    try:
        subject = env.get_template(f"{email}/subject.txt").render(fields)
        html = env.get_template(f"{email}/body.html").render(fields)
        text = env.get_template(f"{email}/body.txt").render(fields)
    except TemplateError as exc:
        raise TemplateRenderError(f"email template {email!r}: {exc}") from None
    # A subject is one line: a newline in it would be a header injection in other transports.
    return RenderedEmail(" ".join(subject.split()), html, text)
