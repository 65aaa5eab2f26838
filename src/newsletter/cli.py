"""The ``newsletter`` command: a thin layer over the package.

Each command parses its options, calls one function of the package, and
prints. Our exceptions become a clean message and an exit code here and
nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from newsletter import __version__
from newsletter.build import build_issue, variant_count
from newsletter.checks import check_folder, check_sizes
from newsletter.errors import ConfigError, ContentError, NewsletterError, Problem, errors_in
from newsletter.preview import DEFAULT_PORT, Preview, serve
from newsletter.render import GMAIL_CLIP_BYTES, Renderer
from newsletter.settings import load_settings
from newsletter.workspace import Workspace

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
        self._workspace: Workspace | None = None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(load_settings(self.root_option))
        return self._workspace


def _ws(ctx: typer.Context) -> Workspace:
    return ctx.find_object(State).workspace  # type: ignore[union-attr]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"newsletter {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    root: Annotated[Optional[Path], typer.Option("--root", envvar="NEWSLETTER_ROOT", help="Newsletter folder (holds issues/, templates/, subscribers/, .env). Default: the current directory.", show_default=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
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

    return wrapper


def _root_of(ctx: typer.Context | None) -> Path:
    state = ctx.find_object(State) if ctx is not None else None
    if state is not None and state._workspace is not None:
        return state._workspace.root
    return Path(".")


def print_problems(problems: list[Problem], root: Path) -> None:
    for problem in problems:
        typer.echo(problem.format(root))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@app.command()
@fail_cleanly
def check(
    ctx: typer.Context,
    issue: Annotated[Optional[str], typer.Argument(help="Issue folder name, e.g. 2021-07. Default: every issue.", show_default=False)] = None,
) -> None:
    """Validate issue sources; print every problem as path:line: severity: message."""
    ws = _ws(ctx)
    ids = [issue] if issue else ws.issue_ids()
    problems: list[Problem] = []
    renderer: Renderer | None = None
    for issue_id in ids:
        found = check_folder(ws.folder(issue_id), ws.taxonomy)
        if not errors_in(found):  # only an issue that loads can be rendered and measured
            renderer = renderer or Renderer(ws.settings)
            found += check_sizes(ws.load(issue_id), renderer)
        problems += found
    print_problems(problems, ws.root)
    errors = len(errors_in(problems))
    warnings = len(problems) - errors
    what = f"issue {issue}" if issue else _plural(len(ids), "issue")
    verdict = "FAILED" if errors else "ok"
    typer.echo(f"{what} checked: {_plural(errors, 'error')}, {_plural(warnings, 'warning')} — {verdict}")
    raise typer.Exit(1 if errors else 0)


@app.command()
@fail_cleanly
def build(
    ctx: typer.Context,
    issue: Annotated[str, typer.Argument(help="Issue folder name, e.g. 2021-07.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder to write (replaced as a whole). Default: build/ISSUE in the newsletter folder.", show_default=False)] = None,
) -> None:
    """Render the issue and every selection of its summaries to HTML and text files, with sizes."""
    ws = _ws(ctx)
    problems = check_folder(ws.folder(issue), ws.taxonomy)
    if errors_in(problems):
        raise ContentError(f"issue {issue} has errors; nothing was built", errors_in(problems))
    loaded = ws.load(issue)
    renderer = Renderer(ws.settings)
    target = out if out is not None else ws.root / "build" / issue
    total = variant_count(loaded)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True, disable=total < 2 or not console.is_terminal) as bar:
        task = bar.add_task(f"rendering {issue}", total=total)
        built = build_issue(loaded, renderer, target, progress=lambda _: bar.advance(task))
    limit = GMAIL_CLIP_BYTES / 1024
    table = Table("file", "size", f"of Gmail's {limit:.0f} KB", "", title=f"{issue}: {_plural(total, 'variant')} in {target}")
    for item in built:
        share = f"{item.size / GMAIL_CLIP_BYTES:.0%}" if item.is_html else ""
        table.add_row(item.path.name, f"{item.size / 1024:.1f} KB", share, item.verdict)
    console.print(table)
    typer.echo(f"open {target / 'index.html'}")
    if any(item.verdict == "clipped" for item in built):
        typer.echo(f"warning: some variants are over {limit:.0f} KB: Gmail will clip them", err=True)


@app.command()
@fail_cleanly
def topics(ctx: typer.Context) -> None:
    """List the topic taxonomy (slug, display name, aliases)."""
    ws = _ws(ctx)
    table = Table("slug", "topic", "also accepted", title=f"{len(ws.taxonomy)} topics (a reader may also choose 'all')")
    for topic in ws.taxonomy:
        table.add_row(topic.slug, topic.name, ", ".join(topic.aliases))
    console.print(table)


@app.command("issues")
@fail_cleanly
def list_issues(ctx: typer.Context) -> None:
    """List the issues with status, summary count, send date and check result."""
    ws = _ws(ctx)
    settings = ws.settings
    table = Table("issue", "subject", "status", "summaries", "sends", "check", title=f"issues in {settings.issues_dir}")
    for issue_id in ws.issue_ids():
        problems = check_folder(ws.folder(issue_id), ws.taxonomy)
        loaded = ws.read(issue_id)
        errors = len(errors_in(problems))
        verdict = f"{_plural(errors, 'error')}" if errors else f"ok, {_plural(len(problems), 'warning')}"
        issue = loaded.issue
        if issue is None:
            table.add_row(issue_id, "?", "?", "?", "?", verdict)
            continue
        sends = issue.scheduled_for(settings.zone, settings.send_time).isoformat(timespec="minutes")
        table.add_row(issue_id, issue.subject, issue.status, str(len(issue.summaries)), sends, verdict)
    console.print(table)


@app.command("preview")
@fail_cleanly
def preview_issue(
    ctx: typer.Context,
    issue: Annotated[Optional[str], typer.Argument(help="Issue folder name, e.g. 2021-07. Default: the newest issue.", show_default=False)] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")] = DEFAULT_PORT,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser.")] = False,
) -> None:
    """Serve the issue's variants on a local web page that reloads as you edit; Ctrl-C stops it."""
    ws = _ws(ctx)
    issue_id = issue or ws.latest_id()
    ws.folder(issue_id)  # an unknown issue is an error now, not a page later
    serve(Preview(ws.settings, issue_id, log=typer.echo), port, open_browser=not no_open, echo=typer.echo)


def main() -> None:
    """Entry point of the ``newsletter`` console script."""
    app()


# Commands about readers and delivery live in their own module; importing it
# registers them on ``app``.
from newsletter import cli_sending  # noqa: E402,F401
from newsletter import cli_archive  # noqa: E402,F401
from newsletter import cli_schedule  # noqa: E402,F401
