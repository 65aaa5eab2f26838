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
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.send import SendReport, report_lines, send
from newsletter.errors import ConfigError, ContentError, NewsletterError, Problem
from newsletter.schedule.attempts import DONE, NOT_READY, SENDING, SendAtAttempts
from newsletter.schedule.policy import (
    MONTHLY,
    RUN_NOW,
    SEND_AT,
    Readiness,
    monthly_trigger,
    readiness,
    send_at_issues,
    send_at_of,
    unreadable_timing,
)
from newsletter.schedule.report import deliver_report
from newsletter.settings import Settings, load_settings
from newsletter.support.words import human, plural

log = logging.getLogger("newsletter.schedule")


class Outcome(StrEnum):
    """What a run did with one issue (not a ledger status: those are per reader)."""

    SENT = "sent"
    NOT_SENT = "NOT SENT"
    FAILED = "FAILED"
    LATER = "later"


# -- one run ------------------------------------------------------------------------


@dataclass
class IssueRun:
    """What a run did with one issue."""

    issue_id: str
    due: str  # "1st of the month", "run now" or "send_at 2030-01-03T08:00:00+01:00"
    outcome: Outcome
    reason: str = ""
    problems: list[Problem] = field(default_factory=list)
    send: SendReport | None = None
    subject: str = ""
    via: str = ""
    notes: list[str] = field(default_factory=list)
    short: str = ""  # for Outcome.LATER: what the subject line says

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.LATER or (
            self.outcome == Outcome.SENT and self.send is not None and self.send.ok
        )

    def headline(self) -> str:
        if self.outcome == Outcome.SENT and self.send is not None:
            s = self.send
            parts = [f"sent to {s.sent}" if s.sent else "nothing new to send"]
            if s.failed:
                parts.append(f"{len(s.failed)} failed")
            if s.in_doubt:
                parts.append(f"{len(s.in_doubt)} in doubt")
            if s.unread:
                parts.append(f"{plural(len(s.unread), 'subscriber row')} not read")
            return f"{self.issue_id} {', '.join(parts)}"
        if self.outcome == Outcome.LATER:
            return f"{self.issue_id} {self.short}"
        if self.outcome == Outcome.FAILED:
            return f"{self.issue_id} {Outcome.FAILED}"
        return f"{self.issue_id} {self.outcome} ({self.reason.split(':')[0]})"


@dataclass
class RunReport:
    """Everything one run did, for the log, the author and the exit code."""

    at: datetime
    kind: str
    issues: list[IssueRun] = field(default_factory=list)
    next_run: datetime | None = None
    root: Path | None = None
    unschedulable: list[Problem] = field(default_factory=list)  # issue.md errors hiding a send_at

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
            lines += [*self._lines(run), ""]
        if self.unschedulable:
            lines.append("Cannot be scheduled until fixed (`newsletter check`):")
            lines += [f"  {p.format(self.root)}" for p in self.unschedulable]
            lines.append("")
        if self.next_run is not None:
            lines.append(f"Next run: {self.next_run.isoformat(timespec='seconds')}.")
        return "\n".join(lines).rstrip() + "\n"

    def _lines(self, run: IssueRun) -> list[str]:
        title = f'{run.issue_id} "{run.subject}"' if run.subject else run.issue_id
        if run.outcome == Outcome.SENT and run.send is not None:
            s = run.send
            out = [
                f"{title} ({run.due}): sent via {run.via}",
                f"  sent now {s.sent}, sent before {s.already_sent}, skipped {sum(s.skipped.values())}, "
                f"failed {len(s.failed)}, in doubt {len(s.in_doubt)}"
                + (f", being sent by another run {s.elsewhere}" if s.elsewhere else "")
                + (f", subscriber rows not read {len(s.unread)}" if s.unread else ""),
            ]
            if s.skipped:
                out.append("  skipped: " + "; ".join(f"{n} {why}" for why, n in sorted(s.skipped.items())))
            out += report_lines(s, self.root, indent="  ")
        elif run.outcome == Outcome.LATER:
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
    if kind != SEND_AT:
        report.unschedulable = unreadable_timing(ws)
    with Ledger(settings.ledger_url) as ledger:
        attempts = SendAtAttempts(ledger.engine)
        if kind != SEND_AT:
            month = _month_issue(ws, now, kind, ledger, attempts)
            if month is not None:
                report.issues.append(month)
        for issue_id, at in due:
            run = _send_at_issue(ws, issue_id, at, ledger, attempts, tell_again=kind != SEND_AT)
            if run is not None:
                report.issues.append(run)
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
        return IssueRun(
            issue_id,
            due,
            Outcome.LATER,
            f"waits for its send_at {when}, not the 1st" + ("" if state.ready else f" (not ready yet: {state.reason})"),
            short="waits for its send_at",
        )
    attempted = attempts.state(issue_id, at)
    if attempted == DONE:
        return IssueRun(
            issue_id, due, Outcome.LATER, f"went out at its send_at {when}", short="went out at its send_at"
        )
    if attempted == SENDING:
        return IssueRun(
            issue_id,
            due,
            Outcome.LATER,
            f"is being sent since its send_at {when} (`newsletter status {issue_id}`)",
            short="is being sent",
        )
    if at > now - ws.settings.misfire_grace:
        return None  # due now: the send_at part of this run sends it
    if ledger.counts(issue_id):
        return IssueRun(
            issue_id, due, Outcome.LATER, f"sent already; its send_at {when} has passed", short="sent already"
        )
    return IssueRun(
        issue_id,
        due,
        Outcome.NOT_SENT,
        f"missed: its send_at {when} passed more than "
        f"NEWSLETTER_MISFIRE_GRACE ({human(ws.settings.misfire_grace)}) ago; "
        f"send it with `newsletter send {issue_id}` or set a new send_at",
    )


def _send_at_issue(
    ws: Workspace, issue_id: str, at: datetime, ledger: Ledger, attempts: SendAtAttempts, tell_again: bool
) -> IssueRun | None:
    due = f"send_at {at.isoformat(timespec='seconds')}"
    state = attempts.state(issue_id, at)
    if state in (SENDING, DONE):
        return None
    ready = readiness(ws, issue_id)
    if not ready.ready:
        first = state is None and attempts.move(issue_id, at, None, NOT_READY)
        if first or tell_again:
            return IssueRun(issue_id, due, Outcome.NOT_SENT, ready.reason, ready.problems)
        return None  # the author was told when its time came; it goes once it is ready
    if not attempts.move(issue_id, at, state, SENDING):
        return None  # another run took it
    run = IssueRun(issue_id, due, Outcome.FAILED, "stopped before the send finished")
    try:
        run = _send(ws, issue_id, due, ledger, ready)
    finally:
        attempts.move(issue_id, at, SENDING, NOT_READY if run.outcome == Outcome.NOT_SENT else DONE)
    return run


def _send(ws: Workspace, issue_id: str, due: str, ledger: Ledger, ready: Readiness | None = None) -> IssueRun:
    """Send one issue non-interactively, as ``newsletter send ISSUE --yes`` does (the same function)."""
    ready = ready or readiness(ws, issue_id)
    if not ready.ready or ready.checked is None:
        return IssueRun(issue_id, due, Outcome.NOT_SENT, ready.reason, ready.problems)
    run = IssueRun(issue_id, due, Outcome.FAILED)
    try:
        planned, report = send(ws, ready.checked, ledger)
    except ContentError as err:  # e.g. a draft, or the subscriber files under --strict
        return IssueRun(issue_id, due, Outcome.NOT_SENT, str(err), err.problems)
    except NewsletterError as err:
        run.reason = str(err)
        return run
    except Exception as err:  # one issue's bug must not stop the scheduler; the log has the traceback
        log.exception("sending %s failed", issue_id)
        # A database error's text would list the statement's parameters (readers' addresses).
        run.reason = f"unexpected {type(err).__name__}: {getattr(err, 'orig', None) or err}"
        return run
    run.subject, run.via, run.notes = planned.sender.issue.subject, planned.sender.backend.describe(), planned.warnings
    if report is not None and report.unread:
        run.notes.append("fix the subscriber rows not read and send again (`newsletter subscribers check`)")
    run.send, run.outcome = report, Outcome.SENT
    return run


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
        level = logging.INFO if run.ok else logging.ERROR if run.outcome == Outcome.FAILED else logging.WARNING
        log.log(level, "%s", f"{run.issue_id} {run.outcome}: {run.reason}" if run.reason else run.headline())
    if not report.issues:
        log.info("nothing was due")
    where = deliver_report(settings, report.subject(), report.text(), report.at)
    log.info("report %s", where)
    if report.next_run is not None:
        log.info("next run: %s", report.next_run.isoformat(timespec="seconds"))
    return where
