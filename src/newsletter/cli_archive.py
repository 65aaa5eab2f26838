"""``newsletter archive``: the web archive of every ready issue (see ``newsletter.archive``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from newsletter import archive
from newsletter.cli import _plural, _ws, app, console, fail_cleanly

@app.command("archive")
@fail_cleanly
def build_archive(
    ctx: typer.Context,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder to write (replaced as a whole). Default: site/ in the newsletter folder.", show_default=False)] = None,
) -> None:
    """Build the web archive of every ready issue (pages per issue, summary and topic; Atom feeds)."""
    ws = _ws(ctx)
    target = out if out is not None else ws.root / archive.DEFAULT_FOLDER
    found = archive.collect(ws)
    for skipped in found.skipped:
        for problem in skipped.problems:
            typer.echo(problem.format(ws.root), err=True)
        typer.echo(f"error: issue {skipped.issue_id} is left out of the archive; run `newsletter check {skipped.issue_id}`",
                   err=True)
    total = len(found.issues)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True, disable=total < 2 or not console.is_terminal) as bar:
        task = bar.add_task("archiving", total=total)
        built = archive.build_site(found, ws.settings, target, progress=lambda _: bar.advance(task))
    typer.echo(f"archive of {_plural(built.issues, 'issue')} ({built.summaries} {'summary' if built.summaries == 1 else 'summaries'}, "
               f"{_plural(built.topics, 'topic')}) in {target}: {_plural(built.pages, 'page')}, "
               f"{_plural(built.feeds, 'feed')}")
    if found.drafts:
        typer.echo(f"left out {_plural(len(found.drafts), 'draft')}: {', '.join(found.drafts)}")
    typer.echo(f"open {target / archive.INDEX}")
    raise typer.Exit(1 if found.skipped else 0)
