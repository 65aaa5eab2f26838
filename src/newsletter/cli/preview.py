"""``newsletter preview``: the issue's variants in a local web page (see ``newsletter.web.preview``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from newsletter.cli.app import app, fail_cleanly, workspace
from newsletter.web.preview import DEFAULT_PORT, Preview, serve


@app.command("preview")
@fail_cleanly
def preview_issue(
    ctx: typer.Context,
    issue: Annotated[
        Optional[str],
        typer.Argument(help="Issue folder name, e.g. 2021-07. Default: the newest issue.", show_default=False),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")
    ] = DEFAULT_PORT,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser.")] = False,
) -> None:
    """Serve the issue's variants on a local web page that reloads as you edit; Ctrl-C stops it."""
    ws = workspace(ctx)
    issue_id = issue or ws.latest_id()
    ws.folder(issue_id)  # an unknown issue is an error now, not a page later
    serve(Preview(ws.settings, issue_id, log=typer.echo), port, open_browser=not no_open, echo=typer.echo)
