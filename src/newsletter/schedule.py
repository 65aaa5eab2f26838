"""Scheduled dispatch: what one run of the schedule does, and when runs fall.

Two jobs make the schedule (``scheduler.py`` hands them to APScheduler):

- ``monthly_job``, on day 1 of every month at NEWSLETTER_SEND_TIME in
  NEWSLETTER_TIMEZONE, sends the month's issue: ``issues/YYYY-MM`` of the
  run's date. An issue with a ``send_at`` is left to its own time instead.
- ``send_at_job``, every minute, sends an issue whose ``send_at`` has come
  (within NEWSLETTER_MISFIRE_GRACE). It reads the files each time, so a new
  or changed ``send_at`` needs no restart.

Both call ``run_once``, as does ``newsletter schedule --run-now``. A run sends
only an issue with ``status: ready`` that passes ``check``, through the same
library calls as ``newsletter send``; a missing, draft or invalid issue is
not sent and the report says why. Running again is harmless: the ledger
sends nobody twice, and the ``schedule_send_at`` table makes the minute job
try each ``send_at`` once (and tell the author once) however often it looks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.author_report import deliver_report
from newsletter.checks import check_folder
from newsletter.content import ISSUE_FILE
from newsletter.errors import ConfigError, ContentError, NewsletterError, Problem, errors_in
from newsletter.ledger import Ledger
from newsletter.send import SendReport, plan, prepare, send_issue, sync_suppressions
from newsletter.settings import Settings, load_settings
from newsletter.workspace import Workspace

log = logging.getLogger("newsletter.schedule")

# What started a run.
MONTHLY, SEND_AT, RUN_NOW = "1st of the month", "send_at", "run now"
# Outcomes of one issue in a run.
SENT, NOT_SENT, FAILED, LATER = "sent", "NOT SENT", "FAILED", "later"
# How many failed or in-doubt addresses a report lists by name.
LIST_AT_MOST = 20


class MonthlyTrigger(CronTrigger):
    """A CronTrigger that fires once per wall-clock time, even in a repeated hour.

    APScheduler 3.11's CronTrigger fires twice when the send time falls in the
    hour a DST change repeats (01:30 on 1 November 2026 in New York is 01:30
    EDT, then 01:30 EST). Jobs are pickled with this class, so its import
    path (``newsletter.schedule.MonthlyTrigger``) must not change.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire = super().get_next_fire_time(previous_fire_time, now)
        if fire is not None and previous_fire_time is not None:
            before = previous_fire_time.astimezone(self.timezone).replace(tzinfo=None, fold=0)
            if fire.replace(tzinfo=None, fold=0) == before:
                fire = super().get_next_fire_time(fire, fire)
        return fire


def monthly_trigger(settings: Settings) -> MonthlyTrigger:
    """Day 1 of every month at the send time, in the newsletter's zone (DST-correct)."""
    at = settings.send_time
    return MonthlyTrigger(day=1, hour=at.hour, minute=at.minute, second=at.second, timezone=settings.zone)


def describe_schedule(settings: Settings) -> str:
    return (f"day 1 of every month at {settings.send_time:%H:%M} {settings.timezone}; "
            f"a missed run is made up within {human(settings.misfire_grace)}")


def human(span: timedelta) -> str:
    """``3 days``, ``12 hours``, ``90 minutes``, ``45 seconds``."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- is an issue ready? ----------------------------------------------------------


@dataclass
class Readiness:
    """Whether an issue may be sent; ``reason`` says why not (empty when ready)."""

    issue_id: str
    reason: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.reason


def readiness(ws: Workspace, issue_id: str) -> Readiness:
    """Missing, invalid (with its errors), draft, or ready."""
    folder = ws.settings.issues_dir / issue_id
    if not folder.is_dir():
        return Readiness(issue_id, f"missing: there is no folder issues/{issue_id}")
    errors = errors_in(check_folder(folder, ws.taxonomy))
    if errors:
        return Readiness(issue_id, f"invalid: {_plural(len(errors), 'error')} (run `newsletter check {issue_id}`)", errors)
    if ws.read(issue_id).issue.status != "ready":  # type: ignore[union-attr]  # no errors: it loaded
        return Readiness(issue_id, f"draft: set `status: ready` in issues/{issue_id}/issue.md to send it")
    return Readiness(issue_id)


def send_at_of(ws: Workspace, issue_id: str) -> datetime | None:
    """The issue's ``send_at`` as an aware time (a naive one is in the newsletter's zone)."""
    meta = ws.settings.issues_dir / issue_id / ISSUE_FILE
    try:
        # Cheap test first: the minute job asks this of every issue, every minute.
        if "send_at" not in meta.read_text(encoding="utf-8", errors="replace"):
            return None
    except OSError:
        return None
    issue = ws.read(issue_id).issue
    if issue is None or issue.send_at is None:
        return None
    return issue.scheduled_for(ws.settings.zone, ws.settings.send_time)


def send_at_issues(ws: Workspace) -> Iterator[tuple[str, datetime]]:
    """Every issue with a (valid) ``send_at``, and that time."""
    for issue_id in ws.issue_ids():
        at = send_at_of(ws, issue_id)
        if at is not None:
            yield issue_id, at


# -- what the minute job remembers -------------------------------------------------

metadata = MetaData()
send_at_attempts = Table(
    "schedule_send_at", metadata,
    Column("issue_id", String(16), primary_key=True),
    Column("send_at", String(32), primary_key=True),  # UTC, ISO 8601: a new send_at is a new attempt
    Column("state", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
# not_ready: told the author; tried again (silently) until it is ready.
# sending: a run owns it. done: sent (or tried and failed: the author was told).
NOT_READY, SENDING, DONE = "not_ready", "sending", "done"


class SendAtAttempts:
    """Which ``send_at`` times have been acted on, in the ledger's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @staticmethod
    def key(at: datetime) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def state(self, issue_id: str, at: datetime) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(send_at_attempts.c.state).where(
                send_at_attempts.c.issue_id == issue_id, send_at_attempts.c.send_at == self.key(at))).scalar()

    def move(self, issue_id: str, at: datetime, old: str | None, new: str) -> bool:
        """Compare and set: ``old`` → ``new``; False if another run got there first."""
        now = datetime.now(UTC)
        if old is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(send_at_attempts).values(issue_id=issue_id, send_at=self.key(at), state=new,
                                                                 updated_at=now))
            except IntegrityError:
                return False
            return True
        with self.engine.begin() as conn:
            done = conn.execute(update(send_at_attempts).where(
                send_at_attempts.c.issue_id == issue_id, send_at_attempts.c.send_at == self.key(at),
                send_at_attempts.c.state == old).values(state=new, updated_at=now))
            return done.rowcount == 1

    def release_interrupted(self) -> list[str]:
        """Give sends cut short (the scheduler was killed) back to the minute check; their issue ids.

        Call it only when no run can be sending (the scheduler starting,
        holding its lease): the ledger then resends none of those already sent.
        """
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(send_at_attempts.c.issue_id).where(
                send_at_attempts.c.state == SENDING)).scalars())
            conn.execute(update(send_at_attempts).where(send_at_attempts.c.state == SENDING)
                         .values(state=NOT_READY, updated_at=datetime.now(UTC)))
        return ids


# -- one run ------------------------------------------------------------------------


@dataclass
class IssueRun:
    """What a run did with one issue."""

    issue_id: str
    due: str  # "1st of the month", "run now" or "send_at 2030-01-03T08:00:00+01:00"
    outcome: str  # SENT, NOT_SENT, FAILED or LATER
    reason: str = ""
    problems: list[Problem] = field(default_factory=list)
    send: SendReport | None = None
    subject: str = ""
    via: str = ""
    notes: list[str] = field(default_factory=list)
    short: str = ""  # for LATER: what the subject line says

    @property
    def ok(self) -> bool:
        return self.outcome == LATER or (self.outcome == SENT and self.send is not None and self.send.ok)

    def headline(self) -> str:
        if self.outcome == SENT and self.send is not None:
            s = self.send
            parts = [f"sent to {s.sent}" if s.sent else "nothing new to send"]
            if s.failed:
                parts.append(f"{len(s.failed)} failed")
            if s.in_doubt:
                parts.append(f"{len(s.in_doubt)} in doubt")
            return f"{self.issue_id} {', '.join(parts)}"
        if self.outcome == LATER:
            return f"{self.issue_id} {self.short}"
        if self.outcome == FAILED:
            return f"{self.issue_id} {FAILED}"
        return f"{self.issue_id} {self.outcome} ({self.reason.split(':')[0]})"


@dataclass
class RunReport:
    """Everything one run did, for the log, the author and the exit code."""

    at: datetime
    kind: str
    issues: list[IssueRun] = field(default_factory=list)
    next_run: datetime | None = None
    root: Path | None = None

    @property
    def ok(self) -> bool:
        """Nothing failed: every due issue went out, with no failed reader."""
        return all(run.ok for run in self.issues)

    def subject(self) -> str:
        what = "; ".join(run.headline() for run in self.issues) or "nothing was due"
        return f"newsletter: {what} ({self.kind} run, {self.at:%Y-%m-%d %H:%M %Z})"

    def text(self) -> str:
        lines = [f"Scheduled run of {self.at.isoformat(timespec='seconds')} ({self.kind}).", ""]
        if not self.issues:
            lines.append("Nothing was due.")
        for run in self.issues:
            lines += self._lines(run) + [""]
        if self.next_run is not None:
            lines.append(f"Next run: {self.next_run.isoformat(timespec='seconds')}.")
        return "\n".join(lines).rstrip() + "\n"

    def _lines(self, run: IssueRun) -> list[str]:
        title = f"{run.issue_id} \"{run.subject}\"" if run.subject else run.issue_id
        if run.outcome == SENT and run.send is not None:
            s = run.send
            out = [f"{title} ({run.due}): sent via {run.via}",
                   f"  sent now {s.sent}, sent before {s.already_sent}, skipped {sum(s.skipped.values())}, "
                   f"failed {len(s.failed)}, in doubt {len(s.in_doubt)}"
                   + (f", being sent by another run {s.elsewhere}" if s.elsewhere else "")]
            if s.skipped:
                out.append("  skipped: " + "; ".join(f"{n} {why}" for why, n in sorted(s.skipped.items())))
            for label, found in (("failed", s.failed), ("in doubt", s.in_doubt)):
                for email, why in sorted(found.items())[:LIST_AT_MOST]:
                    out.append(f"  {label}: {email}: {why}")
                if len(found) > LIST_AT_MOST:
                    out.append(f"  ... and {len(found) - LIST_AT_MOST} more {label} (`newsletter status {run.issue_id}`)")
        elif run.outcome == LATER:
            out = [f"{title}: {run.reason}"]
        else:
            out = [f"{title} ({run.due}): {run.outcome}: {run.reason}"]
            out += [f"  {p.format(self.root)}" for p in run.problems]
        out += [f"  note: {note}" for note in run.notes]
        return out


def run_once(settings: Settings, now: datetime | None = None, *, kind: str = RUN_NOW) -> RunReport:
    """One run of the schedule at ``now``: send what is due, say what is not.

    A MONTHLY or RUN_NOW run sends the month's issue (unless it has a
    ``send_at``, which decides instead); every run sends the issues whose
    ``send_at`` has come within NEWSLETTER_MISFIRE_GRACE and were not yet
    acted on. One issue's failure does not stop the others.
    """
    now = (now or datetime.now(settings.zone)).astimezone(settings.zone)
    ws = Workspace(settings)
    report = RunReport(now, kind, root=settings.root)
    due = [(i, at) for i, at in send_at_issues(ws) if now - settings.misfire_grace < at <= now]
    if kind == SEND_AT and not due:
        return report  # the usual minute: nothing to do, no database touched
    ledger = Ledger(settings.ledger_url)
    try:
        attempts = SendAtAttempts(ledger.engine)
        if kind != SEND_AT:
            month = _month_issue(ws, now, kind, ledger, attempts)
            if month is not None:
                report.issues.append(month)
        for issue_id, at in due:
            run = _send_at_issue(ws, issue_id, at, ledger, attempts, tell_again=kind != SEND_AT)
            if run is not None:
                report.issues.append(run)
    finally:
        ledger.close()
    return report


def _month_issue(ws: Workspace, now: datetime, kind: str, ledger: Ledger, attempts: SendAtAttempts) -> IssueRun | None:
    issue_id = f"{now:%Y-%m}"
    due = MONTHLY if kind == MONTHLY else RUN_NOW
    at = send_at_of(ws, issue_id) if (ws.settings.issues_dir / issue_id).is_dir() else None
    if at is None:
        return _send(ws, issue_id, due, ledger)
    when = at.isoformat(timespec="seconds")
    if at > now:
        state = readiness(ws, issue_id)
        return IssueRun(issue_id, due, LATER, f"waits for its send_at {when}, not the 1st"
                        + ("" if state.ready else f" (not ready yet: {state.reason})"), short="waits for its send_at")
    state = attempts.state(issue_id, at)
    if state == DONE:
        return IssueRun(issue_id, due, LATER, f"went out at its send_at {when}", short="went out at its send_at")
    if state == SENDING:
        return IssueRun(issue_id, due, LATER, f"is being sent since its send_at {when} (`newsletter status {issue_id}`)",
                        short="is being sent")
    if at > now - ws.settings.misfire_grace:
        return None  # due now: the send_at part of this run sends it
    if ledger.counts(issue_id):
        return IssueRun(issue_id, due, LATER, f"sent already; its send_at {when} has passed", short="sent already")
    return IssueRun(issue_id, due, NOT_SENT, f"missed: its send_at {when} passed more than "
                    f"NEWSLETTER_MISFIRE_GRACE ({human(ws.settings.misfire_grace)}) ago; "
                    f"send it with `newsletter send {issue_id}` or set a new send_at")


def _send_at_issue(ws: Workspace, issue_id: str, at: datetime, ledger: Ledger, attempts: SendAtAttempts,
                   tell_again: bool) -> IssueRun | None:
    due = f"send_at {at.isoformat(timespec='seconds')}"
    state = attempts.state(issue_id, at)
    if state in (SENDING, DONE):
        return None
    ready = readiness(ws, issue_id)
    if not ready.ready:
        first = state is None and attempts.move(issue_id, at, None, NOT_READY)
        if first or tell_again:
            return IssueRun(issue_id, due, NOT_SENT, ready.reason, ready.problems)
        return None  # the author was told when its time came; it goes once it is ready
    if not attempts.move(issue_id, at, state, SENDING):
        return None  # another run took it
    run = IssueRun(issue_id, due, FAILED, "stopped before the send finished")
    try:
        run = _send(ws, issue_id, due, ledger)
    finally:
        attempts.move(issue_id, at, SENDING, NOT_READY if run.outcome == NOT_SENT else DONE)
    return run


def _send(ws: Workspace, issue_id: str, due: str, ledger: Ledger) -> IssueRun:
    """Send one issue non-interactively, as ``newsletter send ISSUE --yes`` does."""
    ready = readiness(ws, issue_id)
    if not ready.ready:
        return IssueRun(issue_id, due, NOT_SENT, ready.reason, ready.problems)
    try:
        sender, warnings = prepare(ws, issue_id)
        run = IssueRun(issue_id, due, FAILED, subject=sender.issue.subject, via=sender.backend.describe(),
                       notes=list(warnings))
        sync_suppressions(sender.backend, ledger)  # as `send` does before every real send
        audience, problems = plan(ws, sender.issue, suppressed=ledger.suppressed())
        if errors_in(problems):
            run.notes.append(f"{_plural(len(errors_in(problems)), 'subscriber row')} with errors left out "
                             "(`newsletter subscribers check`)")
        run.send = send_issue(sender, audience, ledger)
        run.outcome = SENT
        return run
    except ContentError as err:  # changed under us since readiness()
        return IssueRun(issue_id, due, NOT_SENT, str(err), err.problems)
    except NewsletterError as err:
        return IssueRun(issue_id, due, FAILED, str(err))
    except Exception as err:  # one issue's bug must not stop the scheduler; the log has the traceback
        log.exception("sending %s failed", issue_id)
        return IssueRun(issue_id, due, FAILED, f"unexpected {type(err).__name__}: {err}")


# -- the jobs APScheduler runs --------------------------------------------------------

# Runs in one process take turns: the minute job skips a minute rather than
# queue behind a long monthly send.
_RUN_LOCK = threading.Lock()


def monthly_job(root: str) -> None:
    """The 1st-of-the-month run. APScheduler stores it as ``newsletter.schedule:monthly_job``."""
    _job(root, MONTHLY)


def send_at_job(root: str) -> None:
    """The minute check for issues whose ``send_at`` has come (``newsletter.schedule:send_at_job``)."""
    _job(root, SEND_AT)


def _job(root: str, kind: str) -> None:
    if not _RUN_LOCK.acquire(blocking=kind != SEND_AT):
        log.debug("a run is in progress; the send_at check waits for the next minute")
        return
    try:
        settings = load_settings(Path(root))  # re-read: .env may have changed since start-up
        report = run_once(settings, kind=kind)
        if kind == SEND_AT and not report.issues:
            return
        if kind == MONTHLY:
            report.next_run = monthly_trigger(settings).get_next_fire_time(None, datetime.now(settings.zone))
        finish(settings, report)
    except ConfigError as err:
        log.error("%s run not done: %s", kind, err)
    except Exception:
        log.exception("%s run failed", kind)
    finally:
        _RUN_LOCK.release()


def finish(settings: Settings, report: RunReport) -> str:
    """Log the run, one line per issue, and send the author its report; where the report went."""
    for run in report.issues:
        level = logging.INFO if run.ok else logging.ERROR if run.outcome == FAILED else logging.WARNING
        log.log(level, "%s", f"{run.issue_id} {run.outcome}: {run.reason}" if run.reason else run.headline())
    if not report.issues:
        log.info("nothing was due")
    where = deliver_report(settings, report.subject(), report.text(), report.at)
    log.info("report %s", where)
    if report.next_run is not None:
        log.info("next run: %s", report.next_run.isoformat(timespec="seconds"))
    return where


# -- what comes next ---------------------------------------------------------------------


@dataclass(frozen=True)
class Upcoming:
    """A future run, the issue it would send, and whether that issue is ready."""

    at: datetime
    why: str
    issue_id: str
    verdict: str

    def line(self) -> str:
        return f"{self.at.isoformat(timespec='seconds')}  {self.why:<16}  {self.issue_id}  {self.verdict}"


def upcoming(settings: Settings, now: datetime | None = None, months: int = 3,
             pending_run: datetime | None = None) -> list[Upcoming]:
    """The next ``months`` firsts of the month and every send_at still to come, in time order.

    ``pending_run`` is a monthly run the job store still owes (missed while
    the scheduler was stopped): it is shown, with whether it will be made up.
    """
    now = (now or datetime.now(settings.zone)).astimezone(settings.zone)
    ws = Workspace(settings)
    found: list[Upcoming] = []
    if pending_run is not None and pending_run <= now:
        late = now - pending_run
        verdict = ("missed: runs when the scheduler starts" if late <= settings.misfire_grace else
                   f"missed by more than {human(settings.misfire_grace)}: will be skipped")
        found.append(Upcoming(pending_run.astimezone(settings.zone), "missed run", f"{now:%Y-%m}", verdict))
    trigger = monthly_trigger(settings)
    fire = trigger.get_next_fire_time(None, now)
    for _ in range(months):
        if fire is None:
            break
        issue_id = f"{fire:%Y-%m}"
        at = send_at_of(ws, issue_id) if (settings.issues_dir / issue_id).is_dir() else None
        verdict = f"not on the 1st: goes at its send_at {at.isoformat(timespec='seconds')}" if at else _verdict(ws, issue_id)
        found.append(Upcoming(fire, MONTHLY, issue_id, verdict))
        fire = trigger.get_next_fire_time(fire, fire)
    pending = [(i, at) for i, at in send_at_issues(ws) if at > now - settings.misfire_grace]
    if pending:
        ledger = Ledger(settings.ledger_url) if has_database(settings) else None
        try:
            attempts = SendAtAttempts(ledger.engine) if ledger else None
            for issue_id, at in pending:
                if attempts and attempts.state(issue_id, at) in (SENDING, DONE):
                    continue
                verdict = _verdict(ws, issue_id) + ("" if at > now else " (due: goes within a minute)")
                found.append(Upcoming(at.astimezone(settings.zone), "send_at", issue_id, verdict))
        finally:
            if ledger:
                ledger.close()
    return sorted(found, key=lambda u: u.at)


def has_database(settings: Settings) -> bool:
    """False when the ledger is a SQLite file not yet created (a look must not create it)."""
    url = settings.ledger_url
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


def _verdict(ws: Workspace, issue_id: str) -> str:
    state = readiness(ws, issue_id)
    return "ready" if state.ready else state.reason


def missed_send_at(settings: Settings, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """Issues whose ``send_at`` passed more than the grace ago and that never went out."""
    now = (now or datetime.now(settings.zone)).astimezone(settings.zone)
    ws = Workspace(settings)
    old = [(i, at) for i, at in send_at_issues(ws) if at <= now - settings.misfire_grace]
    if not old:
        return []
    ledger = Ledger(settings.ledger_url)
    try:
        attempts = SendAtAttempts(ledger.engine)
        return [(i, at) for i, at in old if attempts.state(i, at) is None and not ledger.counts(i)]
    finally:
        ledger.close()

