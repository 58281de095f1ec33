"""`create_app`: the dashboard's Flask app, its pages on the stack `connect` returns."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from jobkit_tools.dashboard import (
    pages_dead_letters,
    pages_job,
    pages_jobs,
    pages_overview,
    pages_schedules,
)
from jobkit_tools.dashboard.server import Options, StackView, install


def create_app(connect: Callable[[], StackView], options: Options | None = None) -> Flask:
    """The dashboard on the stack `connect` returns (called per request: it may find the stack
    anew, or raise `StackUnavailableError`, which the page then explains)."""
    app = Flask(__name__)
    install(app, connect, options or Options())
    for module in (pages_overview, pages_jobs, pages_job, pages_dead_letters, pages_schedules):
        app.register_blueprint(module.bp)
    return app
