"""Commands about readers: subscribers check|list, audience."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from newsletter.audience.choices import Merged, topics_text
from newsletter.audience.personalise import Audience
from newsletter.cli.app import app, console, fail_cleanly, print_problems, workspace
from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.readers import reader_store
from newsletter.delivery.send import plan
from newsletter.errors import ConfigError, Problem, errors_in
from newsletter.support.files import write_atomic
from newsletter.support.words import plural

subscribers_app = typer.Typer(help="Check, list and export the readers.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")


def merged_readers(ws: Workspace) -> Merged:
    """The readers as a send reads them: the files synced into the database, readers' own choices winning."""
    with Ledger(ws.settings.ledger_url) as ledger:
        store = reader_store(ws.settings, ledger.engine)
        try:
            return store.load(ws.settings.subscribers_dir, ws.taxonomy)
        finally:
            store.close()


@subscribers_app.command("check")
@fail_cleanly
def subscribers_check(ctx: typer.Context) -> None:
    """Validate subscribers/*.csv (path:line: severity: message) and name the rows readers' own choices override."""
    ws = workspace(ctx)
    found = merged_readers(ws)
    print_problems(found.problems, ws.root)
    for o in found.overrides:
        where = o.path.relative_to(ws.root) if o.path.is_relative_to(ws.root) else o.path
        typer.echo(
            f"{where}:{o.line}: note: {o.email} chose their own {' and '.join(o.fields)} on "
            f"{o.chosen_at:%Y-%m-%d %H:%M} UTC, after this row last changed: theirs is sent "
            "(`newsletter subscribers export` writes the list as sent)"
        )
    errors = len(errors_in(found.problems))
    overridden = f", {plural(len(found.overrides), 'row')} overridden by readers" if found.overrides else ""
    typer.echo(
        f"{plural(len(found.subscribers), 'subscriber')} ({len(found.active)} active): "
        f"{plural(errors, 'error')}, {plural(len(found.problems) - errors, 'warning')}{overridden}"
    )
    raise typer.Exit(1 if errors else 0)


@subscribers_app.command("export")
@fail_cleanly
def subscribers_export(
    ctx: typer.Context,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Write to FILE (default: standard output).", show_default=False)
    ] = None,
) -> None:
    """Write the readers as sent (files and readers' own choices merged) as CSV: email,name,topics,status."""
    ws = workspace(ctx)
    found = merged_readers(ws)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["email", "name", "topics", "status"])
    for reader in found.subscribers:
        writer.writerow([reader.email, reader.name, topics_text(reader.topics), reader.status])
    if out is None:
        typer.echo(buffer.getvalue(), nl=False)
        return
    write_atomic(out, buffer.getvalue().encode("utf-8"))
    typer.echo(f"wrote {plural(len(found.subscribers), 'reader')} to {out}", err=True)


@subscribers_app.command("list")
@fail_cleanly
def subscribers_list(
    ctx: typer.Context,
    topic: Annotated[Optional[str], typer.Option(help="Only readers who get this topic (name, slug or alias).")] = None,
) -> None:
    """List subscribers (optionally those of one topic) and the count per topic."""
    ws = workspace(ctx)
    found = merged_readers(ws)
    wanted = None
    if topic is not None:
        wanted = ws.taxonomy.get(topic)
        if wanted is None:
            raise ConfigError(ws.taxonomy.unknown_message(topic))
    readers = [s for s in found.subscribers if wanted is None or s.topics is None or wanted.slug in s.topics]
    table = Table("email", "name", "topics", "status", title=plural(len(readers), "subscriber"))
    for reader in readers:
        topics = "all" if reader.topics is None else "; ".join(sorted(reader.topics))
        table.add_row(reader.email, reader.name, topics, reader.status)
    console.print(table)
    counts = Table("topic", "active readers", title="readers per topic ('all' readers count for every topic)")
    active = found.active
    everything = sum(1 for r in active if r.topics is None)
    for t in ws.taxonomy:
        counts.add_row(t.name, str(everything + sum(1 for r in active if r.topics is not None and t.slug in r.topics)))
    console.print(counts)


def print_audience(ws: Workspace, audience: Audience, problems: list[Problem]) -> None:
    """The variants, their readers, who is skipped and why, and the subscriber rows left out."""
    table = Table(
        "variant",
        "summaries",
        "readers",
        title=f"audience of {audience.issue.id}: "
        f"{plural(audience.recipients, 'reader')} in {plural(len(audience.groups), 'variant')}",
    )
    for selection, readers in audience.groups.items():
        table.add_row(audience.key(selection), ", ".join(selection), str(readers))
    console.print(table)
    for reason, count in audience.skipped.items():
        typer.echo(f"skipped: {count} ({reason})")
    if problems:
        typer.echo(f"rows with problems ({len(problems)}), left out:" if errors_in(problems) else "warnings:")
        print_problems(problems, ws.root)


@app.command()
@fail_cleanly
def audience(ctx: typer.Context, issue: Annotated[str, typer.Argument(help="Issue, e.g. 2021-07.")]) -> None:
    """Show the variants of an issue, how many readers get each, who is skipped and why."""
    ws = workspace(ctx)
    loaded = ws.load(issue)
    with Ledger(ws.settings.ledger_url) as ledger:
        audience_, problems = plan(ws, loaded, engine=ledger.engine)
    print_audience(ws, audience_, problems)
