"""Sending an issue: audience → claim → hand over → record, batch by batch.

The ledger makes it safe to run again at any time: readers already sent are
left alone, a batch whose fate is unknown is reported as in doubt and only
resent when asked, and two runs at once split the readers between them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

from sqlalchemy.engine import Engine

from newsletter.audience.personalise import Addressee, Audience, plan_audience
from newsletter.audience.store import ReaderStore
from newsletter.content.checks import Checked
from newsletter.content.model import Issue, Selection
from newsletter.content.workspace import Workspace
from newsletter.delivery.backends import select_backend
from newsletter.delivery.backends.base import Backend, Envelope, Recipient
from newsletter.delivery.handover import Batches, Dealer
from newsletter.delivery.ledger import FAILED, IN_DOUBT, QUEUED, SENDING, SENT, Ledger
from newsletter.delivery.links import Links
from newsletter.delivery.pipeline import quick_turns
from newsletter.delivery.readers import addressees, issue_readers, reader_store
from newsletter.errors import (
    BatchFailed,
    ConfigError,
    ContentError,
    Problem,
    SuppressionsUnavailable,
    errors_in,
)
from newsletter.render.renderer import Renderer
from newsletter.render.variant import Variant
from newsletter.settings import unset_for_sending, weak_secret, with_sample_defaults
from newsletter.support import collector

TEST_PREFIX = "[TEST] "
_ADDRESS = attrgetter("email")
# How many failed, in-doubt or unread readers a report names; `newsletter status` lists them all.
LIST_AT_MOST = 20


@dataclass
class SendReport:
    """What a run did; ``failed`` and ``in_doubt`` map address → reason.

    ``unread`` are the subscriber rows that could not be read (bad address,
    malformed CSV, unreadable file...): readers the run could not even
    consider, so the run is not ``ok`` while there are any.
    """

    issue_id: str
    sent: int = 0
    already_sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    in_doubt: dict[str, str] = field(default_factory=dict)
    elsewhere: int = 0  # being sent by another run right now
    variants: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    unread: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every reader in the files was accounted for: none failed, none in doubt, no row unread."""
        return not self.failed and not self.in_doubt and not self.unread


@dataclass
class Sender:
    """Everything a send needs, built once per run."""

    issue: Issue
    backend: Backend
    renderer: Renderer
    links: Links
    sender: str
    reply_to: str | None = None
    connections: int = 1  # requests in the air at once (``handover``)
    _variants: dict[tuple[str, ...], Variant] = field(default_factory=dict)

    def variant(self, selection: tuple[str, ...]) -> Variant:
        if selection not in self._variants:
            self._variants[selection] = self.renderer.render(self.issue, list(selection))
        return self._variants[selection]

    def recipient(self, reader: Addressee) -> Recipient:
        if not self.backend.personal_links:  # ~3 µs a reader saved: an HMAC and three links
            return Recipient(reader.email, reader.name, "", "", "")
        token = self.links.token(reader.email)
        return Recipient(
            reader.email,
            reader.name,
            token,
            self.links.unsubscribe(token),
            self.links.preferences(token),
            self.links.unsubscribe_mailto(token),
        )

    def envelope(self, variant: Variant, batch_id: str, test: bool = False) -> Envelope:
        subject = (TEST_PREFIX if test else "") + self.issue.subject
        return Envelope(self.issue.id, variant, subject, self.sender, self.reply_to, batch_id, test)


def prepare(ws: Workspace, checked: Checked, *, test: bool = False) -> tuple[Sender, list[str]]:
    """The Sender for a checked issue, and warnings to show.

    Refuses an issue that fails ``check``, a draft (unless for a test send),
    and a real send without sender, postal address and secret.
    """
    settings = ws.settings
    issue_id = checked.issue_id
    issue = checked.issue
    if issue is None:
        raise ContentError(f"issue {issue_id} fails `newsletter check`; nothing was sent", checked.errors)
    if issue.status != "ready" and not test:
        raise ContentError(f"issue {issue_id} is a draft: set `status: ready` in issues/{issue_id}/issue.md to send it")
    backend = select_backend(settings)
    warnings = []
    if backend.name == "outbox":
        settings, filled = with_sample_defaults(settings)
        if filled:
            warnings.append(
                f"{', '.join(filled)} not set: using sample values (fine for the outbox, refused for a real send)"
            )
    elif unset := unset_for_sending(settings):
        raise ConfigError(f"a real send needs {', '.join(unset)}; set them in the environment or {settings.root}/.env")
    elif weak := weak_secret(settings.secret.get_secret_value()):
        raise ConfigError(weak)
    sender = Sender(
        issue,
        backend,
        Renderer(settings),
        Links(settings),
        settings.from_address,
        settings.reply_to or None,
        settings.send_connections,
    )
    return sender, warnings


def plan(ws: Workspace, issue: Issue, *, engine: Engine, strict: bool = False) -> tuple[Audience, list[Problem]]:
    """How many readers get which variant of ``issue``, who is skipped why; problems with the subscriber files.

    The readers are the files synced into ``engine``'s database, each
    reader's own choices winning (``audience.store``), counted there; the
    provider's do-not-send list is the copy ``sync_suppressions`` made.
    """
    store = reader_store(ws.settings, engine)
    try:
        problems = store.sync(ws.settings.subscribers_dir, ws.taxonomy)  # parses the files only if they changed
        tally = store.tally()
    finally:
        store.close()
    if strict and errors_in(problems):
        raise ContentError("subscriber files have errors (--strict): nothing was sent", problems)
    return plan_audience(issue, tally, send_unmatched=ws.settings.send_unmatched), problems


def sync_suppressions(backend: Backend, ledger: Ledger) -> int | None:
    """Copy the provider's suppression lists into the ledger; how many (None: it keeps none)."""
    found = backend.suppressions()
    if found is None:
        return None
    ledger.replace_suppressions(found)
    return len(found)


@dataclass
class Plan:
    """A send about to happen: who gets what, through which backend, and what to tell the user first."""

    sender: Sender
    audience: Audience
    problems: list[Problem]  # with the subscriber files (rows left out)
    warnings: list[str]  # about the settings
    synced: int | None  # addresses on the provider's suppression lists (None: not synced)


def send(
    ws: Workspace,
    checked: Checked,
    ledger: Ledger,
    *,
    strict: bool = False,
    dry_run: bool = False,
    resend_in_doubt: bool = False,
    go_ahead: Callable[[Plan], bool] = lambda plan: True,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[Plan, SendReport | None]:
    """The one way an issue is sent, by ``newsletter send`` and by the scheduler alike.

    prepare → sync the provider's suppressions (not in a dry run: it stays
    offline) → plan the audience and render its variants → ``go_ahead(plan)`` (the command shows the
    plan and may ask; False stops here, and the report is None) → send.
    """
    sender, warnings = prepare(ws, checked)
    synced = None
    if not dry_run:
        try:
            synced = sync_suppressions(sender.backend, ledger)
        except SuppressionsUnavailable as err:
            warnings.append(f"suppressions not synced (the last synced copy is used): {err}")
    audience, problems = plan(ws, sender.issue, engine=ledger.engine, strict=strict)
    # Every variant rendered before the first email leaves: a selection whose
    # template fails stops the send before anyone has the issue.
    for selection in audience.groups:
        sender.variant(selection)
    planned = Plan(sender, audience, problems, warnings, synced)
    if not go_ahead(planned):
        return planned, None
    report = send_issue(sender, audience, ledger, dry_run=dry_run, resend_in_doubt=resend_in_doubt, progress=progress)
    report.unread = errors_in(problems)
    return planned, report


@collector.paused()
def send_issue(
    sender: Sender,
    audience: Audience,
    ledger: Ledger,
    *,
    dry_run: bool = False,
    resend_in_doubt: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> SendReport:
    """Send the issue to the readers in ``ledger``'s database, routed by ``audience``, recording every outcome.

    The readers stream from the database a chunk at a time (``issue_readers``)
    and are dealt into one batch per variant; each full batch is claimed,
    built and handed over, the next made ready while a request is in the air
    (``handover``). Memory holds a chunk and a batch per variant, whatever
    the audience.
    """
    issue = sender.issue
    report = SendReport(issue.id, dry_run=dry_run)
    run_id = None if dry_run else ledger.start_run(issue.id)
    store = ReaderStore(ledger.engine, sender.links.token)
    try:
        if run_id is not None:
            _settle_in_doubt(sender, ledger, store)
        batches = None if run_id is None else Batches(sender, ledger, report, run_id, resend_in_doubt, progress)
        dealer = Dealer(sender, report, batches, progress)
        with quick_turns():
            try:
                _deal(audience, store, dealer, ledger if run_id is not None else None, resend_in_doubt, progress)
                dealer.finish(list(audience.groups))
            finally:
                dealer.close()
    finally:
        store.close()
        if run_id is not None:
            ledger.finish_run(run_id)
    return report


def _deal(
    audience: Audience,
    store: ReaderStore,
    dealer: Dealer,
    ledger: Ledger | None,
    resend_in_doubt: bool,
    progress: Callable[[int], None],
) -> None:
    """Route each reader as they stream in: to a batch, to the skipped (recorded), or counted as done."""
    issue_id, route, report = audience.issue.id, audience.routes.route, dealer.report
    open_ = {None, QUEUED, FAILED} | ({IN_DOUBT} if resend_in_doubt else set())
    skipped_by = report.skipped
    for after, upto, rows in issue_readers(store, issue_id):
        skipped: dict[str, list[str]] = {}  # reason -> keys
        stale: list[str] = []  # skipped readers with a row that would hide it
        done = 0
        for key, email, name, topics, status, suppressed, had, _why in rows:
            where = route(topics, status, suppressed)
            if isinstance(where, str):
                skipped_by[where] = skipped_by.get(where, 0) + 1
                # A reader with an answer (sent, failed...) keeps it.
                if had is None or had == QUEUED:
                    skipped.setdefault(where, []).append(key)
                    if had is not None:
                        stale.append(key)
            elif had in open_:
                dealer.add(where, Addressee(key, email, name), had is None)
            else:
                done += 1
                if had == SENT:
                    report.already_sent += 1
                elif had == SENDING:
                    report.elsewhere += 1
                else:
                    report.in_doubt[email] = "in doubt from an earlier run; resend with --resend-in-doubt"
        if done:
            progress(done)
        if ledger is not None:  # every range, none skipped too: it replaces what an earlier run noted
            ledger.record_skipped(issue_id, after, upto, skipped, stale)


def _settle_in_doubt(sender: Sender, ledger: Ledger, store: ReaderStore) -> None:
    """Turn dead runs' claims into in-doubt rows, and settle those the backend can tell about."""
    issue_id = sender.issue.id
    ledger.settle_orphans(issue_id)
    doubtful = [r.email for r in ledger.rows(issue_id, [IN_DOUBT])]
    if not doubtful:
        return
    recipients = [sender.recipient(reader) for reader in addressees(store, doubtful).values()]
    arrived = sender.backend.delivered(issue_id, recipients) if recipients else None
    if arrived is None:
        return
    ledger.resolve(issue_id, arrived, SENT)
    ledger.resolve(issue_id, [r.key for r in recipients if r.key not in arrived], FAILED)


def send_tests(sender: Sender, addresses: Sequence[str], selections: Iterable[Selection]) -> list[str]:
    """Send every variant once to each test address; no ledger. Returns variant keys sent."""
    recipients = [
        Recipient(
            a,
            "",
            sender.links.token(a),
            sender.links.unsubscribe(sender.links.token(a)),
            sender.links.preferences(sender.links.token(a)),
            None,
        )
        for a in addresses
    ]
    keys = []
    for selection in selections:
        variant = sender.variant(selection)
        envelope = sender.envelope(variant, uuid.uuid4().hex[:8], test=True)
        outcome = sender.backend.send(envelope, recipients)
        if outcome.failed:
            raise BatchFailed("; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
        keys.append(variant.key)
    return keys


def report_lines(report: SendReport, root: Path | None = None, indent: str = "") -> list[str]:
    """The readers a report must name: failed, in doubt, rows not read; at most LIST_AT_MOST of each."""
    lines: list[str] = []
    for label, found in (("failed", report.failed), ("in doubt", report.in_doubt)):
        for email, why in sorted(found.items())[:LIST_AT_MOST]:
            lines.append(f"{indent}{label}: {email}: {why}")
        if len(found) > LIST_AT_MOST:
            lines.append(
                f"{indent}... and {len(found) - LIST_AT_MOST} more {label} (`newsletter status {report.issue_id}`)"
            )
    for problem in report.unread[:LIST_AT_MOST]:
        lines.append(f"{indent}not read: {problem.format(root)}")
    if len(report.unread) > LIST_AT_MOST:
        lines.append(
            f"{indent}... and {len(report.unread) - LIST_AT_MOST} more rows not read (`newsletter subscribers check`)"
        )
    return lines
