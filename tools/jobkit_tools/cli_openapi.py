"""`jobkit openapi`: the Jobs HTTP API's OpenAPI document, for clients in any language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobkit.client import Jobkit
from jobkit.errors import ConfigurationError
from jobkit_apps.http_api.resolver import build_app, openapi_json
from jobkit_tools.cli_base import app, err, fail, load_types


def _no_client() -> Jobkit:
    raise ConfigurationError("the OpenAPI document is built without a stack")


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print the Jobs HTTP API's OpenAPI 3.1 document (JSON): every route, and an enqueue
    route with its payload schema for each declared job type (built-in, functions/*/*_jobs.py,
    JOBKIT_TYPES). Generate a client from it (openapi-generator, oapi-codegen, ...)."""
    load_types()
    document = openapi_json(build_app(_no_client))
    if output is None:
        print(document)
        return
    try:
        output.write_text(document + "\n", encoding="utf-8")
    except OSError as exc:
        raise fail(exc, 2) from None
    err.print(f"wrote {output}")
