"""The ``newsletter`` command: a thin layer over the package.

Each command parses its options, calls one function of the package, and
prints. Our exceptions become a clean message and an exit code here and
nowhere else (``app.fail_cleanly``).

    app       the Typer app, console, workspace, clean failures (shared)
    start     init, new, templates diff
    content   check, build, topics, issues
    preview   preview
    readers   subscribers check|list, audience
    sending   send, status, suppressions sync
    archive   archive
    schedule  schedule
    serve     serve (the readers' pages)

May import every package; nothing imports it.
"""

# Importing a command module registers its commands, in this order in --help.
# isort: off
from newsletter.cli import start, content, preview, readers, sending, archive, schedule, serve  # noqa: F401

# isort: on
from newsletter.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``newsletter`` console script."""
    app()
