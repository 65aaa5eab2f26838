"""The ``schedule`` command: run the monthly schedule, show it, or do one run now."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer

from newsletter.cli.app import app, fail_cleanly, workspace
from newsletter.errors import ConfigError
from newsletter.schedule.policy import RUN_NOW, describe_schedule, upcoming
from newsletter.schedule.runner import finish, run_once
from newsletter.schedule.service import serve, stored_next_run


@app.command()
@fail_cleanly
def schedule(
    ctx: typer.Context,
    show_next: Annotated[
        bool,
        typer.Option(
            "--next", help="Print the next runs (ISO 8601), the issue each would send and whether it is ready."
        ),
    ] = False,
    run_now: Annotated[
        bool,
        typer.Option("--run-now", help="Do one run now (for cron or a systemd timer) and exit: 0 if nothing failed."),
    ] = False,
) -> None:
    """Send each month's issue on the 1st (and send_at issues at their time); runs until SIGTERM or Ctrl-C."""
    if show_next and run_now:
        raise ConfigError("--next and --run-now do not go together")
    settings = workspace(ctx).settings
    if show_next:
        typer.echo(f"schedule: {describe_schedule(settings)}")
        for item in upcoming(settings, pending_run=stored_next_run(settings)):
            typer.echo(item.line())
        return
    if run_now:
        report = run_once(settings, kind=RUN_NOW)
        typer.echo(report.text(), nl=False)
        with _log_to_stderr():
            where = finish(settings, report)
        typer.echo(f"report {where}")
        raise typer.Exit(0 if report.ok else 1)
    stop = threading.Event()
    with _log_to_stderr(), _stop_on_signals(stop):
        serve(settings, stop)


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """Our log lines (and APScheduler's warnings) on stderr, with time, for journald or a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    ours, theirs = logging.getLogger("newsletter"), logging.getLogger("apscheduler")
    # The executor's own "missed by" warning repeats ours; its errors (a job that raised) stay.
    executors = logging.getLogger("apscheduler.executors")
    saved = ours.level, theirs.level, executors.level
    ours.setLevel(logging.INFO)
    theirs.setLevel(logging.WARNING)
    executors.setLevel(logging.ERROR)
    ours.addHandler(handler)
    theirs.addHandler(handler)
    try:
        yield
    finally:
        # A handler left behind would write to a closed stream after the command (tests).
        ours.removeHandler(handler)
        theirs.removeHandler(handler)
        ours.setLevel(saved[0])
        theirs.setLevel(saved[1])
        executors.setLevel(saved[2])


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop``; a second one acts as usual (stops at once)."""
    signals = (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("newsletter.schedule.runner").info("received %s", signal.Signals(signum).name)
        stop.set()
        for sig in signals:
            signal.signal(sig, signal.SIG_DFL)

    saved = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
