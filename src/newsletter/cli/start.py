"""Commands that start things: init (a newsletter folder), new (an issue or a summary), templates diff."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Optional

import typer

from newsletter import defaults
from newsletter.cli.app import app, fail_cleanly, root_option, workspace
from newsletter.content.scaffold import init_folder, new_issue, new_summary
from newsletter.support.words import plural


@app.command()
@fail_cleanly
def init(
    ctx: typer.Context,
    folder: Annotated[
        Optional[Path],
        typer.Argument(
            help="Folder to set up (created if missing). Default: the --root folder.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that are already there.")] = False,
) -> None:
    """Make a working newsletter folder: topics, templates, a readers file, settings and an example draft issue."""
    root = folder if folder is not None else root_option(ctx) or Path(".")
    root.mkdir(parents=True, exist_ok=True)
    written = init_folder(root, force=force)
    issue = next(p.parts[1] for p in written.files if p.parts[0] == "issues" and len(p.parts) == 3)
    typer.echo(f"newsletter folder {root}: {plural(len(written.files), 'file')} written")
    there = "" if root.resolve() == Path.cwd().resolve() else f"cd {root} && "
    typer.echo(f"next: {there}newsletter preview {issue}   (edit issues/{issue}/*.md; copy .env.example to .env)")


@app.command()
@fail_cleanly
def new(
    ctx: typer.Context,
    month: Annotated[Optional[str], typer.Argument(help="YYYY-MM. Default: next month.", show_default=False)] = None,
    summary: Annotated[
        Optional[str],
        typer.Option(
            "--summary",
            metavar="SLUG",
            help="Add NN-SLUG.md to the newest issue (or MONTH).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start next month's issue (issue.md and two summary skeletons), or add a summary to the newest one."""
    ws = workspace(ctx)
    if summary is not None:
        issue_id = month or ws.latest_id()
        ws.folder(issue_id)
        written = new_summary(ws.settings.issues_dir, ws.taxonomy, summary, issue_id)
    else:
        written = new_issue(ws.settings.issues_dir, ws.taxonomy, month)
    for path in written.files:
        typer.echo(f"wrote issues/{path.as_posix()}")


templates_app = typer.Typer(
    help="The email and archive templates: yours and the packaged defaults.", no_args_is_help=True
)
app.add_typer(templates_app, name="templates")


@templates_app.command("diff")
@fail_cleanly
def templates_diff(ctx: typer.Context) -> None:
    """Show how your templates/ differ from the defaults of this version of the tool (exit 1 if they do)."""
    ws = workspace(ctx)
    own = ws.settings.templates_dir
    differ = 0
    for default in sorted(p for p in defaults.TEMPLATES.rglob("*") if p.is_file()):
        name = default.relative_to(defaults.TEMPLATES).as_posix()
        mine = own / name
        if not mine.is_file():
            typer.echo(f"templates/{name}: not in your folder, the packaged default is used")
            continue
        ours, theirs = mine.read_text(encoding="utf-8"), default.read_text(encoding="utf-8")
        if ours == theirs:
            continue
        differ += 1
        typer.echo(
            "".join(
                difflib.unified_diff(
                    theirs.splitlines(keepends=True),
                    ours.splitlines(keepends=True),
                    f"default/{name}",
                    f"templates/{name}",
                )
            ),
            nl=False,
        )
    extra = sorted(p.relative_to(own).as_posix() for p in own.rglob("*") if p.is_file()) if own.is_dir() else []
    for name in extra:
        if not (defaults.TEMPLATES / name).is_file():
            typer.echo(f"templates/{name}: yours only (no default of that name)")
    typer.echo(f"{plural(differ, 'template')} {'differs' if differ == 1 else 'differ'} from the defaults")
    raise typer.Exit(1 if differ else 0)
