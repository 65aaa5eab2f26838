"""What every command shares: the Typer app, the console, the workspace of an invocation, and clean failures.

Command modules import from here (never from ``newsletter.cli``), and
``newsletter/cli/__init__.py`` imports them to register their commands: no cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from newsletter import __version__
from newsletter.content.workspace import TOPICS_FILE, Workspace
from newsletter.errors import ConfigError, ContentError, NewsletterError, Problem
from newsletter.settings import load_settings

app = typer.Typer(
    help="Build, preview and send a monthly research digest by email.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
console = Console(highlight=False, soft_wrap=True)


class State:
    """Per-invocation state: settings are loaded on first use, so --help works with bad ones."""

    def __init__(self, root: Path | None) -> None:
        self.root_option = root
        self.loaded: Workspace | None = None

    @property
    def workspace(self) -> Workspace:
        if self.loaded is None:
            settings = load_settings(self.root_option)
            if not (settings.issues_dir / TOPICS_FILE).is_file():
                # Without this, `check` in an empty folder would say "0 issues checked: ok".
                raise ConfigError(
                    f"{settings.root} is not a newsletter folder (it has no issues/{TOPICS_FILE}): "
                    "start one with `newsletter init`"
                )
            self.loaded = Workspace(settings)
        return self.loaded


def _state(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None, "the app callback sets ctx.obj"
    return state


def workspace(ctx: typer.Context) -> Workspace:
    """The newsletter folder of this invocation (settings are loaded on first use)."""
    return _state(ctx).workspace


def root_option(ctx: typer.Context) -> Path | None:
    """The folder named by --root or NEWSLETTER_ROOT, if any (for commands that make a folder)."""
    return _state(ctx).root_option


def _version(value: bool) -> None:
    if value:
        typer.echo(f"newsletter {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    root: Annotated[
        Optional[Path],
        typer.Option(
            "--root",
            envvar="NEWSLETTER_ROOT",
            help="Newsletter folder (holds issues/, templates/, subscribers/, .env). Default: the current directory.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    ctx.obj = State(root)


def fail_cleanly(fn: Callable[..., None]) -> Callable[..., None]:
    """Turn our exceptions into a message on stderr and an exit code.

    Bad input is the user's to fix, so it gets a sentence, never a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except ConfigError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except ContentError as err:
            root = _root_of(kwargs.get("ctx"))
            for problem in err.problems:
                typer.echo(problem.format(root), err=True)
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        except NewsletterError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        except SQLAlchemyError as err:
            # A database that went read-only, full or corrupt mid-command. Only
            # the driver's own words: SQLAlchemy's text would show the statement's
            # parameters, readers' addresses among them.
            reason = getattr(err, "orig", None) or type(err).__name__
            typer.echo(
                f"error: the database failed: {reason} (NEWSLETTER_DATABASE_URL, default state/newsletter.db)", err=True
            )
            raise typer.Exit(2) from None

    return wrapper


def _root_of(ctx: typer.Context | None) -> Path:
    state = ctx.find_object(State) if ctx is not None else None
    if state is not None and state.loaded is not None:
        return state.loaded.root
    return Path(".")


def print_problems(problems: list[Problem], root: Path) -> None:
    for problem in problems:
        typer.echo(problem.format(root))


def progress_bar(*, total: int, keep: bool = False, eta: bool = False) -> Progress:
    """A rich progress bar on a terminal (none when output is piped or ``total`` is under 2)."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, transient=not keep, disable=total < 2 or not console.is_terminal)
