"""When the schedule runs and whether an issue may go: the monthly trigger, ``send_at``, readiness, what comes next."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger

from newsletter.content.checks import Checked
from newsletter.content.model import ISSUE_FILE
from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import Ledger
from newsletter.errors import Problem
from newsletter.schedule.attempts import DONE, SENDING, SendAtAttempts
from newsletter.settings import Settings
from newsletter.support.words import human, plural

# What started a run.
MONTHLY, SEND_AT, RUN_NOW = "1st of the month", "send_at", "run now"


class MonthlyTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A CronTrigger that fires once per wall-clock time, even in a repeated hour.

    APScheduler 3.11's CronTrigger fires twice when the send time falls in the
    hour a DST change repeats (01:30 on 1 November 2026 in New York is 01:30
    EDT, then 01:30 EST). Jobs are pickled with this class: job stores written
    before the schedule became a package name ``newsletter.schedule.MonthlyTrigger``,
    which ``newsletter/schedule/__init__.py`` keeps importable.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
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
    return (
        f"day 1 of every month at {settings.send_time:%H:%M} {settings.timezone}; "
        f"a missed run is made up within {human(settings.misfire_grace)}"
    )


# -- is an issue ready? ----------------------------------------------------------


@dataclass
class Readiness:
    """Whether an issue may be sent; ``reason`` says why not (empty when ready)."""

    issue_id: str
    reason: str = ""
    problems: list[Problem] = field(default_factory=list)
    checked: Checked | None = None  # what check read, for the send to use (the folder is read once)

    @property
    def ready(self) -> bool:
        return not self.reason


def readiness(ws: Workspace, issue_id: str) -> Readiness:
    """Missing, invalid (with its errors), draft, or ready."""
    folder = ws.settings.issues_dir / issue_id
    if not folder.is_dir():
        return Readiness(issue_id, f"missing: there is no folder issues/{issue_id}")
    checked = ws.check(issue_id)
    if checked.issue is None:
        return Readiness(
            issue_id,
            f"invalid: {plural(len(checked.errors), 'error')} (run `newsletter check {issue_id}`)",
            checked.errors,
            checked,
        )
    if checked.issue.status != "ready":
        return Readiness(
            issue_id, f"draft: set `status: ready` in issues/{issue_id}/{ISSUE_FILE} to send it", checked=checked
        )
    return Readiness(issue_id, checked=checked)


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


def unreadable_timing(ws: Workspace) -> list[Problem]:
    """Errors in ``issue.md`` files that name a ``send_at``: those issues cannot be scheduled until fixed.

    One broken file must not stop the schedule (the others go on), but its
    author must hear of it: the monthly run's report lists these.
    """
    found: list[Problem] = []
    for issue_id in ws.issue_ids():
        meta = ws.settings.issues_dir / issue_id / ISSUE_FILE
        try:
            if "send_at" not in meta.read_text(encoding="utf-8", errors="replace"):
                continue
        except OSError:
            continue
        found += [p for p in ws.read(issue_id).problems if p.severity == "error" and p.path == meta]
    return found


def send_at_issues(ws: Workspace) -> Iterator[tuple[str, datetime]]:
    """Every issue with a (valid) ``send_at``, and that time."""
    for issue_id in ws.issue_ids():
        at = send_at_of(ws, issue_id)
        if at is not None:
            yield issue_id, at


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


def upcoming(
    settings: Settings, now: datetime | None = None, months: int = 3, pending_run: datetime | None = None
) -> list[Upcoming]:
    """The next ``months`` firsts of the month and every send_at still to come, in time order.

    ``pending_run`` is a monthly run the job store still owes (missed while
    the scheduler was stopped): it is shown, with whether it will be made up.
    """
    now = (now or datetime.now(settings.zone)).astimezone(settings.zone)
    ws = Workspace(settings)
    found: list[Upcoming] = []
    if pending_run is not None and pending_run <= now:
        late = now - pending_run
        verdict = (
            "missed: runs when the scheduler starts"
            if late <= settings.misfire_grace
            else f"missed by more than {human(settings.misfire_grace)}: will be skipped"
        )
        found.append(Upcoming(pending_run.astimezone(settings.zone), "missed run", f"{now:%Y-%m}", verdict))
    trigger = monthly_trigger(settings)
    fire = trigger.get_next_fire_time(None, now)
    for _ in range(months):
        if fire is None:
            break
        issue_id = f"{fire:%Y-%m}"
        at = send_at_of(ws, issue_id) if (settings.issues_dir / issue_id).is_dir() else None
        verdict = (
            f"not on the 1st: goes at its send_at {at.isoformat(timespec='seconds')}" if at else _verdict(ws, issue_id)
        )
        found.append(Upcoming(fire, MONTHLY, issue_id, verdict))
        fire = trigger.get_next_fire_time(fire, fire)
    pending = [(i, at) for i, at in send_at_issues(ws) if at > now - settings.misfire_grace]
    if pending:
        with Ledger(settings.ledger_url) if has_database(settings) else nullcontext() as ledger:
            attempts = SendAtAttempts(ledger.engine) if ledger else None
            for issue_id, at in pending:
                if attempts and attempts.state(issue_id, at) in (SENDING, DONE):
                    continue
                verdict = _verdict(ws, issue_id) + ("" if at > now else " (due: goes within a minute)")
                found.append(Upcoming(at.astimezone(settings.zone), SEND_AT, issue_id, verdict))
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
    with Ledger(settings.ledger_url) as ledger:
        attempts = SendAtAttempts(ledger.engine)
        return [(i, at) for i, at in old if attempts.state(i, at) is None and not ledger.counts(i)]
