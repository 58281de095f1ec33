"""The dashboard's Flask app: which stack it shows, what keeps other sites away from the
operator's credentials, how errors look, and what every page shares.

It runs on the operator's machine with the operator's AWS credentials, so:
- it answers only requests whose Host is a loopback name (a DNS-rebinding page cannot read it);
- every action is a POST form carrying a per-process CSRF token, with a same-origin check on
  `Origin` when the browser sends one (another site cannot make the browser act);
- `--read-only` hides every action and refuses any POST with 403;
- pages may not be framed, load scripts and styles from the dashboard only, and every value is
  escaped by Jinja2's autoescape;
- an error is a plain sentence on the page (and the traceback, if any, in the server's log).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from flask import Flask, current_app, flash, g, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from jobkit.client import Jobkit
from jobkit.errors import (
    InvalidRequestError,
    InvalidStateError,
    JobkitError,
    JobNotFoundError,
    ScheduleNotFoundError,
    ServiceError,
)
from jobkit.models import JobState
from jobkit_tools.dashboard import formatting

log = logging.getLogger("jobkit.dashboard")

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_CREDENTIAL_CODES = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "NoCredentialsError",
    "TokenRetrievalError",
    "SSOTokenLoadError",
    "UnauthorizedSSOTokenError",
}


@dataclass(frozen=True)
class StackView:
    """The stack the pages show: a client on it, what to call it, whether it is the local
    stack (a job's log lines: its function log files in `log_dir`, if it writes them) or a
    deployed one (its lines: CloudWatch Logs Insights)."""

    client: Jobkit
    description: str
    local: bool = False
    log_dir: Path | None = None


class StackUnavailableError(Exception):
    """No stack to show: not found, or gone (the page says why and what to do)."""


@dataclass(frozen=True)
class Options:
    read_only: bool = False
    refresh_seconds: int = 5  # the overview and a job's page reload their data this often
    # Host header names served (None: any, for a dashboard bound to another interface)
    allowed_hosts: frozenset[str] | None = field(default=LOCAL_HOSTS)


class Dashboard:
    """What the pages share: `app.extensions["jobkit_dashboard"]`."""

    def __init__(self, connect: Callable[[], StackView], options: Options) -> None:
        self.connect = connect
        self.options = options
        self.csrf_token = secrets.token_urlsafe(32)


def dashboard() -> Dashboard:
    return cast(Dashboard, current_app.extensions["jobkit_dashboard"])


def stack() -> StackView:
    """The stack of this request (found once per request)."""
    if "stack" not in g:
        g.stack = dashboard().connect()
    return cast(StackView, g.stack)


def client() -> Jobkit:
    return stack().client


def install(app: Flask, connect: Callable[[], StackView], options: Options) -> None:
    """Give `app` the stack, the guards, the error pages and the template helpers."""
    app.secret_key = secrets.token_bytes(32)  # signs the flash-message cookie; new per process
    app.config.update(
        SESSION_COOKIE_NAME="jobkit_dashboard",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions["jobkit_dashboard"] = Dashboard(connect, options)
    app.before_request(_guard)
    app.after_request(_headers)
    app.register_error_handler(JobkitError, _jobkit_error)
    app.register_error_handler(StackUnavailableError, _unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.context_processor(_shared)
    app.jinja_env.filters.update(
        moment=formatting.moment,
        duration=formatting.duration,
        relative=formatting.relative,
        masked_json=formatting.masked_json,
        masked=formatting.masked,
    )


def _guard() -> Response | tuple[str, int] | None:
    options = dashboard().options
    hostname = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    if options.allowed_hosts is not None and hostname not in options.allowed_hosts:
        return _page_error(
            400, "Unexpected host", f"This dashboard answers as {', '.join(sorted(LOCAL_HOSTS))}."
        )
    if request.method != "POST":
        return None
    if options.read_only:
        return _page_error(
            403, "Read-only", "This dashboard was started with --read-only: it changes nothing."
        )
    origin = request.headers.get("Origin")
    if origin is not None and origin != request.host_url.rstrip("/"):
        return _page_error(403, "Refused", "This form was sent from another site.")
    token = request.form.get("csrf", "")
    if not hmac.compare_digest(token.encode(), dashboard().csrf_token.encode()):
        return _page_error(
            403,
            "Refused",
            "This form did not come from this dashboard (its CSRF token is missing or stale): "
            "reload the page and try again.",
        )
    return None


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # (not no-referrer: with it, a browser sends `Origin: null` on the dashboard's own forms)
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def _shared() -> dict[str, Any]:
    """What every template may use."""
    found: StackView | None = g.get("stack")
    options = dashboard().options
    return {
        "read_only": options.read_only,
        "csrf_token": dashboard().csrf_token,
        "refresh_seconds": options.refresh_seconds,
        "stack_description": found.description if found else "",
        "states": [s.value for s in JobState],
        "now_text": f"{datetime.now(UTC):%H:%M:%S} UTC",
    }


def _page_error(status: int, title: str, message: str, hint: str = "") -> tuple[str, int]:
    return render_template("error.html", title=title, message=message, hint=hint), status


def _jobkit_error(exc: JobkitError) -> tuple[str, int]:
    if isinstance(exc, ServiceError):
        return _page_error(502, "AWS error", str(exc), _service_hint(exc))
    status, title = next(
        (status, title)
        for kind, status, title in (
            (InvalidRequestError, 400, "Bad request"),
            (JobNotFoundError, 404, "Not found"),
            (ScheduleNotFoundError, 404, "Not found"),
            (InvalidStateError, 409, "Not possible now"),
            (JobkitError, 500, "Error"),
        )
        if isinstance(exc, kind)
    )
    return _page_error(status, title, str(exc))


def _service_hint(exc: ServiceError) -> str:
    local = g.get("stack") is not None and g.stack.local
    if exc.code in _CREDENTIAL_CODES:
        return "Your AWS credentials are missing or expired: sign in again, then reload."
    if exc.code in ("AccessDenied", "AccessDeniedException"):
        return "Your credentials may not do this: ask for the permission named above."
    if exc.code in ("EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError"):
        if local:
            return "The local stack does not answer: is `jobkit dev` still running?"
        return "AWS could not be reached: check the network, then reload."
    return ""


def _unavailable(exc: StackUnavailableError) -> tuple[str, int]:
    return _page_error(503, "No stack", str(exc), "Start one with `jobkit dev`, or pass --stack.")


def _http_error(exc: HTTPException) -> tuple[str, int]:
    return _page_error(exc.code or 500, exc.name, exc.description or "")


def _unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("dashboard request failed: %s %s", request.method, request.path)
    text = " ".join(str(exc).split())[:500]
    return _page_error(500, "Unexpected error", f"{type(exc).__name__}: {text}")


def act(do: Callable[[], str], back: str) -> Response:
    """Run an action of a POST form, say what it did (or why it could not) on the page it
    goes back to."""
    try:
        flash(do(), "done")
    except ServiceError as exc:
        flash(f"{exc} {_service_hint(exc)}".strip(), "error")
    except JobkitError as exc:
        flash(str(exc), "error")
    return redirect(back, 303)
