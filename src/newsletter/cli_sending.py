"""Commands about readers and delivery: subscribers, audience, send, status."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from newsletter.cli import _plural, _ws, app, console, fail_cleanly, print_problems
from newsletter.errors import ConfigError, errors_in
from newsletter.ledger import FAILED, IN_DOUBT, SENDING, SENT, SKIPPED, Ledger
from newsletter.personalise import Audience
from newsletter.backends import select_backend
from newsletter.send import SendReport, plan, prepare, send_issue, send_tests, sync_suppressions
from newsletter.subscribers import read_subscribers
from newsletter.workspace import Workspace

subscribers_app = typer.Typer(help="Check and list the subscriber files.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("check")
@fail_cleanly
def subscribers_check(ctx: typer.Context) -> None:
    """Validate subscribers/*.csv: print every problem as path:line: severity: message."""
    ws = _ws(ctx)
    found = read_subscribers(ws.settings.subscribers_dir, ws.taxonomy)
    print_problems(found.problems, ws.root)
    errors = len(errors_in(found.problems))
    typer.echo(f"{_plural(len(found.subscribers), 'subscriber')} ({len(found.active)} active): "
               f"{_plural(errors, 'error')}, {_plural(len(found.problems) - errors, 'warning')}")
    raise typer.Exit(1 if errors else 0)


@subscribers_app.command("list")
@fail_cleanly
def subscribers_list(
    ctx: typer.Context,
    topic: Annotated[Optional[str], typer.Option(help="Only readers who get this topic (name, slug or alias).")] = None,
) -> None:
    """List subscribers (optionally those of one topic) and the count per topic."""
    ws = _ws(ctx)
    found = read_subscribers(ws.settings.subscribers_dir, ws.taxonomy)
    wanted = None
    if topic is not None:
        wanted = ws.taxonomy.get(topic)
        if wanted is None:
            raise ConfigError(ws.taxonomy.unknown_message(topic))
    readers = [s for s in found.subscribers if wanted is None or s.topics is None or wanted.slug in s.topics]
    table = Table("email", "name", "topics", "status", title=_plural(len(readers), "subscriber"))
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


def _print_audience(ws: Workspace, audience: Audience, problems: list) -> None:
    table = Table("variant", "summaries", "readers", title=f"audience of {audience.issue.id}: "
                  f"{_plural(audience.recipients, 'reader')} in {_plural(len(audience.groups), 'variant')}")
    for selection, readers in audience.groups.items():
        table.add_row(audience.key(selection), ", ".join(selection), str(len(readers)))
    console.print(table)
    for reason, count in audience.skipped_by_reason().items():
        typer.echo(f"skipped: {count} ({reason})")
    if problems:
        typer.echo(f"rows with problems ({len(problems)}), left out:" if errors_in(problems) else "warnings:")
        print_problems(problems, ws.root)


@app.command()
@fail_cleanly
def audience(ctx: typer.Context, issue: Annotated[str, typer.Argument(help="Issue, e.g. 2021-07.")]) -> None:
    """Show the variants of an issue, how many readers get each, who is skipped and why."""
    ws = _ws(ctx)
    audience_, problems = plan(ws, ws.load(issue), suppressed=_open_ledger(ws).suppressed())
    _print_audience(ws, audience_, problems)


def _open_ledger(ws: Workspace) -> Ledger:
    return Ledger(ws.settings.ledger_url)


@app.command()
@fail_cleanly
def send(
    ctx: typer.Context,
    issue: Annotated[str, typer.Argument(help="Issue, e.g. 2021-07.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Do everything but hand messages over.")] = False,
    test: Annotated[Optional[list[str]], typer.Option("--test", metavar="ADDRESS", help="Send every variant once to ADDRESS, subject marked [TEST]; no ledger. Repeatable.")] = None,
    resend_in_doubt: Annotated[bool, typer.Option("--resend-in-doubt", help="Also resend readers whose earlier batch has an unknown outcome.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse to send if any subscriber row has an error.")] = False,
) -> None:
    """Send an issue to every reader who has not had it yet."""
    ws = _ws(ctx)
    sender, warnings = prepare(ws, issue, test=bool(test))
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    backend = sender.backend
    if test:
        from newsletter.render import selections

        keys = send_tests(sender, test, selections(sender.issue))
        typer.echo(f"test: sent {_plural(len(keys), 'variant')} ({', '.join(keys)}) to {', '.join(test)} via {backend.describe()}")
        return
    ledger = _open_ledger(ws)
    if not dry_run:  # a dry run uses the last synced copy: no network
        synced = sync_suppressions(backend, ledger)
        if synced is not None:
            typer.echo(f"suppressions: {synced} addresses on {backend.name}'s lists")
    audience_, sub_problems = plan(ws, sender.issue, strict=strict, suppressed=ledger.suppressed())
    _print_audience(ws, audience_, sub_problems)
    typer.echo(f"backend: {backend.describe()}{' (dry run: nothing is handed over)' if dry_run else ''}")
    if not yes and not dry_run and sys.stdin.isatty() and not typer.confirm(f"Send {issue} now?"):
        raise typer.Abort()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"sending {issue}", total=audience_.recipients)
        report = send_issue(sender, audience_, ledger, dry_run=dry_run, resend_in_doubt=resend_in_doubt,
                            progress=lambda n: bar.advance(task, n))
    _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report: SendReport) -> None:
    verb = "would send" if report.dry_run else "sent"
    table = Table("outcome", "readers", title=f"{report.issue_id}: {'dry run' if report.dry_run else 'send finished'}")
    table.add_row(verb + " now", str(report.sent))
    table.add_row("sent before", str(report.already_sent))
    table.add_row("skipped", str(sum(report.skipped.values())))
    table.add_row("failed", str(len(report.failed)))
    table.add_row("in doubt", str(len(report.in_doubt)))
    if report.elsewhere:
        table.add_row("being sent by another run", str(report.elsewhere))
    console.print(table)
    if not report.dry_run and report.sent == 0 and not report.failed and not report.in_doubt:
        typer.echo(f"nothing to send: {report.issue_id} has gone to every reader")
    for email, reason in sorted(report.failed.items()):
        typer.echo(f"failed: {email}: {reason}")
    for email, reason in sorted(report.in_doubt.items()):
        typer.echo(f"in doubt: {email}: {reason}")


@app.command()
@fail_cleanly
def status(ctx: typer.Context, issue: Annotated[str, typer.Argument(help="Issue, e.g. 2021-07.")]) -> None:
    """Show the ledger for an issue: counts, and the failed and in-doubt addresses."""
    ws = _ws(ctx)
    ws.folder(issue)
    ledger = _open_ledger(ws)
    counts = ledger.counts(issue)
    table = Table("status", "readers", title=f"ledger of {issue}")
    for name in (SENT, SKIPPED, FAILED, IN_DOUBT, SENDING):
        table.add_row(name, str(counts.get(name, 0)))
    console.print(table)
    for row in ledger.rows(issue, [FAILED, IN_DOUBT]):
        typer.echo(f"{row.status}: {row.email}: {row.reason or ''}")


suppressions_app = typer.Typer(help="The provider's suppression lists (unsubscribes, bounces, blocks...).", no_args_is_help=True)
app.add_typer(suppressions_app, name="suppressions")


@suppressions_app.command("sync")
@fail_cleanly
def suppressions_sync(ctx: typer.Context) -> None:
    """Fetch the provider's suppression lists into the local database (audience and --dry-run use them)."""
    ws = _ws(ctx)
    backend = select_backend(ws.settings)
    count = sync_suppressions(backend, _open_ledger(ws))
    if count is None:
        typer.echo(f"{backend.describe()} keeps no suppression lists: nothing to sync")
        return
    typer.echo(f"synced {count} suppressed address{'' if count == 1 else 'es'} from {backend.describe()}")
