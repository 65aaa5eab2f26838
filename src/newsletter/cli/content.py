"""Commands about issue sources: check, build, topics, issues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from newsletter.cli.app import app, console, fail_cleanly, print_problems, progress_bar, workspace
from newsletter.errors import ContentError, Problem, errors_in
from newsletter.render.build import build_issue, variant_count
from newsletter.render.renderer import Renderer
from newsletter.render.sizes import GMAIL_CLIP_BYTES, check_sizes
from newsletter.support.words import plural


@app.command()
@fail_cleanly
def check(
    ctx: typer.Context,
    issue: Annotated[
        Optional[str], typer.Argument(help="Issue folder name, e.g. 2021-07. Default: every issue.", show_default=False)
    ] = None,
) -> None:
    """Validate issue sources; print every problem as path:line: severity: message."""
    ws = workspace(ctx)
    ids = [issue] if issue else ws.issue_ids()
    problems: list[Problem] = []
    renderer: Renderer | None = None
    for issue_id in ids:
        checked = ws.check(issue_id)
        problems += checked.problems
        if checked.issue is not None:  # only an issue that loads can be rendered and measured
            renderer = renderer or Renderer(ws.settings)
            problems += check_sizes(checked.issue, renderer)
    print_problems(problems, ws.root)
    errors = len(errors_in(problems))
    warnings = len(problems) - errors
    what = f"issue {issue}" if issue else plural(len(ids), "issue")
    verdict = "FAILED" if errors else "ok"
    typer.echo(f"{what} checked: {plural(errors, 'error')}, {plural(warnings, 'warning')} — {verdict}")
    raise typer.Exit(1 if errors else 0)


@app.command()
@fail_cleanly
def build(
    ctx: typer.Context,
    issue: Annotated[str, typer.Argument(help="Issue folder name, e.g. 2021-07.")],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Folder to write (replaced as a whole). Default: build/ISSUE in the newsletter folder.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Render the issue and every selection of its summaries to HTML and text files, with sizes."""
    ws = workspace(ctx)
    checked = ws.check(issue)
    if checked.issue is None:
        raise ContentError(f"issue {issue} has errors; nothing was built", checked.errors)
    loaded = checked.issue
    renderer = Renderer(ws.settings)
    target = out if out is not None else ws.root / "build" / issue
    total = variant_count(loaded)
    with progress_bar(total=total) as bar:
        task = bar.add_task(f"rendering {issue}", total=total)
        built = build_issue(loaded, renderer, target, progress=lambda _: bar.advance(task))
    limit = GMAIL_CLIP_BYTES / 1024
    table = Table(
        "file", "size", f"of Gmail's {limit:.0f} KB", "", title=f"{issue}: {plural(total, 'variant')} in {target}"
    )
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
    ws = workspace(ctx)
    table = Table("slug", "topic", "also accepted", title=f"{len(ws.taxonomy)} topics (a reader may also choose 'all')")
    for topic in ws.taxonomy:
        table.add_row(topic.slug, topic.name, ", ".join(topic.aliases))
    console.print(table)


@app.command("issues")
@fail_cleanly
def list_issues(ctx: typer.Context) -> None:
    """List the issues with status, summary count, send date and check result."""
    ws = workspace(ctx)
    settings = ws.settings
    table = Table("issue", "subject", "status", "summaries", "sends", "check", title=f"issues in {settings.issues_dir}")
    for issue_id in ws.issue_ids():
        checked = ws.check(issue_id)
        errors = len(checked.errors)
        verdict = plural(errors, "error") if errors else f"ok, {plural(len(checked.problems), 'warning')}"
        issue = checked.loaded
        if issue is None:
            table.add_row(issue_id, "?", "?", "?", "?", verdict)
            continue
        sends = issue.scheduled_for(settings.zone, settings.send_time).isoformat(timespec="minutes")
        table.add_row(issue_id, issue.subject, issue.status, str(len(issue.summaries)), sends, verdict)
    console.print(table)
