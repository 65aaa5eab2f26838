"""``newsletter serve``: the readers' pages, SendGrid's events and the archive (see ``newsletter.web.readers``)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from newsletter.cli.app import app, fail_cleanly, workspace
from newsletter.web.readers import DEFAULT_HOST, DEFAULT_PORT, serve


@app.command("serve")
@fail_cleanly
def serve_readers(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (behind a reverse proxy: 127.0.0.1).")] = (
        DEFAULT_HOST
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
) -> None:
    """Serve sign-up, preferences and unsubscribe pages, SendGrid's events and the archive, until SIGTERM or Ctrl-C."""
    ws = workspace(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a migration's every step is not news
    serve(ws.settings, host, port, echo=typer.echo)
