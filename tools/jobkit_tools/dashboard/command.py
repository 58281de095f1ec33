"""`jobkit dashboard`: serve the dashboard on 127.0.0.1 until Ctrl-C (registered on the
`jobkit` app by importing this module; Flask is imported only when the command runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobkit_tools.cli_base import StackOption, app, console, err, fail, load_types

DEFAULT_PORT = 8765
_ANY_INTERFACE = {"0.0.0.0", "::", ""}


@app.command()
def dashboard(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free port).")
    ] = DEFAULT_PORT,
    host: Annotated[
        str,
        typer.Option(help="Interface to serve on; anything but loopback exposes your AWS access."),
    ] = "127.0.0.1",
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, change nothing (actions: 403).")
    ] = False,
    stack: StackOption = None,
) -> None:
    """Web pages on the stack: queues, jobs, dead letters, schedules, and their actions."""
    from jobkit_tools.dashboard.app import create_app
    from jobkit_tools.dashboard.server import LOCAL_HOSTS, Options, StackUnavailableError
    from jobkit_tools.dashboard.serving import discovered, serve

    load_types()
    allowed = None if host in _ANY_INTERFACE else LOCAL_HOSTS | {host}
    if host not in LOCAL_HOSTS | {"::1"}:
        err.print(
            f"[yellow]serving on {host}: whoever reaches it acts with your AWS credentials[/yellow]"
        )
    connect = discovered(stack)
    try:
        console.print(f"stack: {connect().description}", highlight=False)
    except StackUnavailableError as exc:  # the pages say so too, until one is found
        err.print(f"[yellow]{exc}[/yellow]", soft_wrap=True)
    web = create_app(connect, Options(read_only=read_only, allowed_hosts=allowed))

    def ready(url: str) -> None:
        mode = " (read-only)" if read_only else ""
        console.print(f"jobkit dashboard{mode}: [bold]{url}[/bold]  Ctrl-C to stop", soft_wrap=True)

    try:
        serve(web, host, port, ready)
    except OSError as exc:  # the port is taken, or the host is not an interface here
        raise fail(OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}"), 2) from None
