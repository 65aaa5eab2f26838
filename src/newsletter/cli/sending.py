"""Commands about delivery: send, status, suppressions sync."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from newsletter.audience.subscribers import normalize_email
from newsletter.cli.app import app, console, fail_cleanly, progress_bar, workspace
from newsletter.cli.readers import print_audience
from newsletter.delivery.backends import select_backend
from newsletter.delivery.ledger import FAILED, IN_DOUBT, QUEUED, SENDING, SENT, SKIPPED, Ledger
from newsletter.delivery.send import Plan, SendReport, prepare, report_lines, send_tests, sync_suppressions
from newsletter.delivery.send import send as send_issue
from newsletter.errors import ConfigError
from newsletter.support.words import plural


@app.command()
@fail_cleanly
def send(
    ctx: typer.Context,
    issue: Annotated[str, typer.Argument(help="Issue, e.g. 2021-07.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Do everything but hand messages over.")] = False,
    test: Annotated[
        Optional[list[str]],
        typer.Option(
            "--test",
            metavar="ADDRESS",
            help="Send every variant once to ADDRESS, subject marked [TEST]; no ledger. Repeatable.",
        ),
    ] = None,
    resend_in_doubt: Annotated[
        bool, typer.Option("--resend-in-doubt", help="Also resend readers whose earlier batch has an unknown outcome.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse to send if any subscriber row has an error.")
    ] = False,
) -> None:
    """Send an issue to every reader who has not had it yet."""
    ws = workspace(ctx)
    for address in test or []:
        try:
            normalize_email(address)
        except ValueError as err:
            raise ConfigError(f"--test {address!r} is not an email address: {err}") from None
    checked = ws.check(issue)
    if test:
        sender, warnings = prepare(ws, checked, test=True)
        _warn(warnings)
        keys = send_tests(sender, test, sender.issue.selections())
        typer.echo(
            f"test: sent {plural(len(keys), 'variant')} ({', '.join(keys)}) to {', '.join(test)} "
            f"via {sender.backend.describe()}"
        )
        return

    def go_ahead(planned: Plan) -> bool:
        _warn(planned.warnings)
        backend = planned.sender.backend
        if planned.synced is not None:
            typer.echo(f"suppressions: {planned.synced} addresses on {backend.name}'s lists")
        print_audience(ws, planned.audience, planned.problems)
        typer.echo(f"backend: {backend.describe()}{' (dry run: nothing is handed over)' if dry_run else ''}")
        if not yes and not dry_run and sys.stdin.isatty() and not typer.confirm(f"Send {issue} now?"):
            raise typer.Abort()
        total = planned.audience.recipients
        bar = stack.enter_context(progress_bar(total=total, keep=True, eta=True))  # below the plan, once confirmed
        task = bar.add_task(f"sending {issue}", total=total)
        advance[0] = lambda n: bar.advance(task, n)
        return True

    advance: list[Callable[[int], None]] = [lambda n: None]
    with Ledger(ws.settings.ledger_url) as ledger, ExitStack() as stack:
        _, report = send_issue(
            ws,
            checked,
            ledger,
            strict=strict,
            dry_run=dry_run,
            resend_in_doubt=resend_in_doubt,
            go_ahead=go_ahead,
            progress=advance[0],
        )
    assert report is not None  # go_ahead only ever says yes (or aborts)
    _print_report(report, ws.root)
    raise typer.Exit(0 if report.ok else 1)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def _print_report(report: SendReport, root: Path) -> None:
    verb = "would send" if report.dry_run else "sent"
    table = Table("outcome", "readers", title=f"{report.issue_id}: {'dry run' if report.dry_run else 'send finished'}")
    table.add_row(verb + " now", str(report.sent))
    table.add_row("sent before", str(report.already_sent))
    table.add_row("skipped", str(sum(report.skipped.values())))
    table.add_row("failed", str(len(report.failed)))
    table.add_row("in doubt", str(len(report.in_doubt)))
    if report.elsewhere:
        table.add_row("being sent by another run", str(report.elsewhere))
    if report.unread:
        table.add_row("subscriber rows not read", str(len(report.unread)))
    console.print(table)
    if not report.dry_run and report.sent == 0 and not report.failed and not report.in_doubt:
        typer.echo(f"nothing to send: {report.issue_id} has gone to every reader")
    for line in report_lines(report, root):
        typer.echo(line)


@app.command()
@fail_cleanly
def status(ctx: typer.Context, issue: Annotated[str, typer.Argument(help="Issue, e.g. 2021-07.")]) -> None:
    """Show the ledger for an issue: counts, and the failed and in-doubt addresses."""
    ws = workspace(ctx)
    ws.folder(issue)
    with Ledger(ws.settings.ledger_url) as ledger:
        counts = ledger.counts(issue)
        rows = ledger.rows(issue, [FAILED, IN_DOUBT])
    table = Table("status", "readers", title=f"ledger of {issue}")
    for name in (SENT, SKIPPED, FAILED, IN_DOUBT, SENDING, QUEUED):
        table.add_row(name, str(counts.get(name, 0)))
    console.print(table)
    for row in rows:
        typer.echo(f"{row.status}: {row.email}: {row.reason or ''}")


suppressions_app = typer.Typer(
    help="The provider's suppression lists (unsubscribes, bounces, blocks...).", no_args_is_help=True
)
app.add_typer(suppressions_app, name="suppressions")


@suppressions_app.command("sync")
@fail_cleanly
def suppressions_sync(ctx: typer.Context) -> None:
    """Fetch the provider's suppression lists into the local database (audience and --dry-run use them)."""
    ws = workspace(ctx)
    backend = select_backend(ws.settings)
    with Ledger(ws.settings.ledger_url) as ledger:
        count = sync_suppressions(backend, ledger)
    if count is None:
        typer.echo(f"{backend.describe()} keeps no suppression lists: nothing to sync")
        return
    typer.echo(f"synced {plural(count, 'suppressed address')} from {backend.describe()}")
