"""``newsletter archive``: the web archive of every ready issue (see ``newsletter.web.archive``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from newsletter.cli.app import app, fail_cleanly, progress_bar, workspace
from newsletter.support.words import plural
from newsletter.web import archive


@app.command("archive")
@fail_cleanly
def build_archive(
    ctx: typer.Context,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Folder to write (replaced as a whole). Default: site/ in the newsletter folder.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build the web archive of every ready issue (pages per issue, summary and topic; Atom feeds)."""
    ws = workspace(ctx)
    target = out if out is not None else ws.root / archive.DEFAULT_FOLDER
    found = archive.collect(ws)
    for skipped in found.skipped:
        for problem in skipped.problems:
            typer.echo(problem.format(ws.root), err=True)
        typer.echo(
            f"error: issue {skipped.issue_id} is left out of the archive; run `newsletter check {skipped.issue_id}`",
            err=True,
        )
    total = len(found.issues)
    with progress_bar(total=total) as bar:
        task = bar.add_task("archiving", total=total)
        built = archive.build_site(found, ws.settings, target, progress=lambda _: bar.advance(task))
    typer.echo(
        f"archive of {plural(built.issues, 'issue')} ({plural(built.summaries, 'summary')}, "
        f"{plural(built.topics, 'topic')}) in {target}: {plural(built.pages, 'page')}, "
        f"{plural(built.feeds, 'feed')}"
    )
    if found.drafts:
        typer.echo(f"left out {plural(len(found.drafts), 'draft')}: {', '.join(found.drafts)}")
    typer.echo(f"open {target / archive.INDEX}")
    raise typer.Exit(1 if found.skipped else 0)
