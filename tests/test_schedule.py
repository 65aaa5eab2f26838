"""`newsletter schedule`: fire times, what a run sends, misfires, the author's report, signals.

No test waits on the clock: fire times come from the trigger with a fixed
"now", runs from ``run_once`` with a fixed "now", and misfires from a job
store seeded with a run owed in the past, which a real scheduler then finds
at start-up.
"""

from __future__ import annotations

import pickle
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from newsletter.db.schema import scheduler_lease
from newsletter.delivery.ledger import Ledger
from newsletter.errors import ConfigError
from newsletter.schedule.attempts import DONE, SendAtAttempts
from newsletter.schedule.policy import MONTHLY, SEND_AT, MonthlyTrigger, missed_send_at, monthly_trigger, upcoming
from newsletter.schedule.runner import Outcome, finish, run_once
from newsletter.schedule.service import (
    MONTHLY_ID,
    Lease,
    build_scheduler,
    ensure_jobs,
    running_scheduler,
    stored_next_run,
)
from newsletter.settings import Settings, load_settings

from conftest import GOOD_SUMMARY, Newsletter, read_eml
from fake_sendgrid import FakeSendGrid

OSLO = ZoneInfo("Europe/Oslo")
NEW_YORK = ZoneInfo("America/New_York")
JAN_1 = datetime(2030, 1, 1, 9, 0, tzinfo=OSLO)
EDITOR = "editor@example.org"
READERS = "".join(  # subscribers/readers.csv: two get 2030-01, one has unsubscribed
    [
        "ana@example.org,Ana,all,active\n",
        "ben@example.org,Ben,Empathy,active\n",
        "cy@example.org,Cy,all,unsubscribed\n",
    ]
)


def meta(status: str = "ready", send_at: str | None = None) -> str:
    extra = f"send_at: {send_at}\n" if send_at else ""
    return f'---\nsubject: "Empathy and burnout"\nintro: "Two studies on therapists."\nstatus: {status}\n{extra}---\n'


def settings_for(nl: Newsletter, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in {"NEWSLETTER_TIMEZONE": "Europe/Oslo", "NEWSLETTER_AUTHOR_EMAIL": EDITOR, **env}.items():
        monkeypatch.setenv(key, value)
    nl.subscribers(READERS, name="readers")
    return load_settings(nl.root)


def reports(nl: Newsletter) -> list[EmailMessage]:
    """The author's reports the outbox kept (``outbox/reports/``), by file name."""
    return [read_eml(path) for path in nl.outbox("reports")]


def text_of(msg: EmailMessage) -> str:
    return msg.get_content().replace("\r\n", "\n")  # the file has CRLF line ends, as on the wire


def ledger_counts(settings: Settings, issue: str) -> dict[str, int]:
    ledger = Ledger(settings.ledger_url)
    try:
        return ledger.counts(issue)
    finally:
        ledger.close()


def fires(trigger: CronTrigger, start: datetime, n: int) -> list[datetime]:
    found, fire = [], trigger.get_next_fire_time(None, start)
    for _ in range(n):
        found.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)  # as the scheduler asks after each run
    return found


def trigger_for(zone: str, at: str = "09:00") -> MonthlyTrigger:
    return monthly_trigger(Settings(timezone=zone, send_time=at))  # type: ignore[arg-type]


# -- fire times ------------------------------------------------------------------------


def test_fires_on_the_first_across_month_ends_year_ends_and_leap_years() -> None:
    trigger = trigger_for("Europe/Oslo")
    assert [f.isoformat() for f in fires(trigger, datetime(2023, 11, 30, 9, 0, 1, tzinfo=OSLO), 5)] == [
        "2023-12-01T09:00:00+01:00",
        "2024-01-01T09:00:00+01:00",
        "2024-02-01T09:00:00+01:00",
        "2024-03-01T09:00:00+01:00",
        "2024-04-01T09:00:00+02:00",
    ]
    # the 29th of February is just another day; one second past the time is next month
    assert (
        trigger.get_next_fire_time(None, datetime(2024, 2, 29, 23, 59, tzinfo=OSLO)).isoformat()
        == "2024-03-01T09:00:00+01:00"
    )
    assert (
        trigger.get_next_fire_time(None, datetime(2024, 1, 1, 9, 0, 1, tzinfo=OSLO)).isoformat()
        == "2024-02-01T09:00:00+01:00"
    )
    assert (
        trigger.get_next_fire_time(None, datetime(2024, 1, 1, 9, 0, tzinfo=OSLO)).isoformat()
        == "2024-01-01T09:00:00+01:00"
    )


@pytest.mark.parametrize(
    "zone, utc_hours",
    [
        ("Europe/Oslo", [8, 7, 7, 7, 7, 7, 7, 7, 8, 8]),  # CEST from the last Sunday of March to October's
        ("America/New_York", [14, 13, 13, 13, 13, 13, 13, 13, 13, 14]),  # EDT from March's 2nd Sunday to November's 1st
    ],
)
def test_nine_oclock_local_stays_nine_oclock_across_dst(zone: str, utc_hours: list[int]) -> None:
    found = fires(trigger_for(zone), datetime(2024, 2, 15, tzinfo=ZoneInfo(zone)), 10)
    assert [(f.month, f.hour, f.minute) for f in found] == [(m, 9, 0) for m in range(3, 13)]
    assert [f.astimezone(UTC).hour for f in found] == utc_hours


def test_a_send_time_in_the_hour_dst_repeats_fires_once() -> None:
    # 1 November 2026 is a Sunday: New York goes from EDT back to EST at 02:00, so 01:30 happens twice.
    start = datetime(2026, 10, 15, tzinfo=NEW_YORK)
    plain = CronTrigger(day=1, hour=1, minute=30, timezone=NEW_YORK)
    assert [f.isoformat() for f in fires(plain, start, 2)] == [  # APScheduler's own: twice that night
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
    ]
    ours = trigger_for("America/New_York", "01:30")
    expected = ["2026-11-01T01:30:00-04:00", "2026-12-01T01:30:00-05:00"]
    assert [f.isoformat() for f in fires(ours, start, 2)] == expected
    # the job store pickles the trigger: it must come back the same
    assert [f.isoformat() for f in fires(pickle.loads(pickle.dumps(ours)), start, 2)] == expected


def test_a_send_time_in_the_hour_dst_skips_fires_once_an_hour_later() -> None:
    # 1 October 2023 is a Sunday: Sydney jumps from 02:00 to 03:00, so 02:30 does not exist.
    found = fires(
        trigger_for("Australia/Sydney", "02:30"), datetime(2023, 9, 15, tzinfo=ZoneInfo("Australia/Sydney")), 2
    )
    assert [f.astimezone(UTC).isoformat() for f in found] == ["2023-09-30T16:30:00+00:00", "2023-10-31T15:30:00+00:00"]


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, seconds",
    [("3d", 3 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("3600", 3600), ("45s", 45), ("P2D", 2 * 86400)],
)
def test_misfire_grace_takes_days_hours_minutes_or_seconds(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch, value: str, seconds: int
) -> None:
    monkeypatch.setenv("NEWSLETTER_MISFIRE_GRACE", value)
    assert load_settings(newsletter.root).misfire_grace == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "NEWSLETTER_MISFIRE_GRACE",
            "soon",
            "NEWSLETTER_MISFIRE_GRACE: 'soon' is not a duration such as 3d, 12h, 90m or 3600 (seconds)",
        ),
        (
            "NEWSLETTER_MISFIRE_GRACE",
            "30d",
            "NEWSLETTER_MISFIRE_GRACE: 30 days is out of range: from 1 second to 27 days",
        ),
        ("NEWSLETTER_AUTHOR_EMAIL", "the editor", "NEWSLETTER_AUTHOR_EMAIL: 'the editor' is not an email address"),
    ],
)
def test_bad_schedule_settings_are_named(newsletter: Newsletter, name: str, value: str, message: str) -> None:
    result = newsletter.cli("schedule", "--next", env={name: value})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: invalid setting {message}")


# -- one run ------------------------------------------------------------------------------


def test_the_month_issue_is_sent_once_and_the_author_told_each_time(
    newsletter: Newsletter, use_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    newsletter.issue("2030-01")
    first = run_once(settings, JAN_1, kind=MONTHLY)
    finish(settings, first)
    assert first.ok and [r.outcome for r in first.issues] == [Outcome.SENT]
    assert first.issues[0].send.sent == 2  # type: ignore[union-attr]  # ana (all) and ben (Empathy); cy unsubscribed
    files = newsletter.outbox("2030-01")
    assert len(files) == 2
    again = run_once(settings, JAN_1 + timedelta(minutes=5), kind=MONTHLY)
    finish(settings, again)
    assert again.ok and again.issues[0].send.sent == 0 and again.issues[0].send.already_sent == 2  # type: ignore[union-attr]
    assert newsletter.outbox("2030-01") == files
    told = reports(newsletter)
    assert [str(m["To"]) for m in told] == [EDITOR, EDITOR]
    assert [str(m["Subject"]) for m in told] == [
        "newsletter: 2030-01 sent to 2 (1st of the month run, 2030-01-01 09:00 CET)",
        "newsletter: 2030-01 nothing new to send (1st of the month run, 2030-01-01 09:05 CET)",
    ]
    body = text_of(told[0])
    assert '2030-01 "Empathy and burnout" (1st of the month): sent via outbox' in body
    assert "  sent now 2, sent before 0, skipped 1, failed 0, in doubt 0\n  skipped: 1 unsubscribed\n" in body
    assert told[0]["Auto-Submitted"] == "auto-generated" and told[0].get_content_type() == "text/plain"


@pytest.mark.parametrize(
    "case, reason",
    [
        ("missing", "missing: there is no folder issues/2030-01"),
        ("draft", "draft: set `status: ready` in issues/2030-01/issue.md to send it"),
        (
            "invalid",
            "invalid: 1 error (run `newsletter check 2030-01`)\n"
            "  issues/2030-01/01-empathy.md:6: error: unknown topic 'Empathie'; did you mean 'Empathy'?",
        ),
    ],
)
def test_an_issue_that_cannot_go_is_not_sent_and_the_author_is_told_why(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch, case: str, reason: str
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    if case == "draft":
        newsletter.issue("2030-01", meta=meta("draft"))
    elif case == "invalid":
        newsletter.issue(
            "2030-01", summaries={"01-empathy.md": GOOD_SUMMARY.replace("  - Empathy\n", "  - Empathie\n")}
        )
    report = run_once(settings, JAN_1, kind=MONTHLY)
    finish(settings, report)
    assert not report.ok and [r.outcome for r in report.issues] == [Outcome.NOT_SENT]
    assert newsletter.outbox("2030-01") == [] and ledger_counts(settings, "2030-01") == {}
    [told] = reports(newsletter)
    assert str(told["Subject"]).startswith(f"newsletter: 2030-01 NOT SENT ({case})")
    assert f"2030-01 (1st of the month): NOT SENT: {reason}\n" in text_of(told)


def test_run_now_sends_this_months_issue_then_nothing_and_exits_0(
    newsletter: Newsletter, use_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    month = f"{datetime.now(settings.zone):%Y-%m}"
    newsletter.issue(month)
    first = newsletter.cli("schedule", "--run-now")
    assert first.exit_code == 0, first.stderr
    assert f'{month} "Empathy and burnout" (run now): sent via outbox' in first.stdout
    assert "sent now 2, sent before 0, skipped 1, failed 0, in doubt 0" in first.stdout
    assert re.search(r"^report written to .*/outbox/reports/\S+\.eml \(to editor@example\.org\)$", first.stdout, re.M)
    again = newsletter.cli("schedule", "--run-now")
    assert again.exit_code == 0
    assert "sent now 0, sent before 2" in again.stdout
    assert len(newsletter.outbox(month)) == 2 and len(reports(newsletter)) == 2


def test_run_now_exits_1_when_this_months_issue_is_missing(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_for(newsletter, monkeypatch)
    result = newsletter.cli("schedule", "--run-now")
    assert result.exit_code == 1
    assert "NOT SENT: missing: there is no folder issues/" in result.stdout
    assert len(reports(newsletter)) == 1


# -- send_at ------------------------------------------------------------------------------


def test_the_monthly_run_leaves_an_issue_with_a_later_send_at_alone(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    newsletter.issue("2030-01", meta=meta(send_at="2030-01-03T08:00:00+01:00"))
    report = run_once(settings, JAN_1, kind=MONTHLY)
    assert report.ok and [(r.outcome, r.reason) for r in report.issues] == [
        (Outcome.LATER, "waits for its send_at 2030-01-03T08:00:00+01:00, not the 1st")
    ]
    assert report.subject() == "newsletter: 2030-01 waits for its send_at (1st of the month run, 2030-01-01 09:00 CET)"
    assert newsletter.outbox("2030-01") == []


def test_the_minute_check_sends_at_send_at_once_and_picks_up_an_edited_file(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    at = datetime(2030, 1, 3, 8, 0, tzinfo=OSLO)
    newsletter.issue("2030-01", meta=meta(send_at=at.isoformat()))
    newsletter.issue("2030-02", meta=meta("draft", send_at="2030-01-03T08:00:00"))  # naive: Oslo time
    assert run_once(settings, at - timedelta(seconds=30), kind=SEND_AT).issues == []
    due = run_once(settings, at + timedelta(seconds=30), kind=SEND_AT)
    assert [(r.issue_id, r.outcome) for r in due.issues] == [("2030-01", Outcome.SENT), ("2030-02", Outcome.NOT_SENT)]
    assert due.issues[0].due == "send_at 2030-01-03T08:00:00+01:00"
    assert len(newsletter.outbox("2030-01")) == 2
    # a minute later: nothing new, and the draft is not reported again
    assert run_once(settings, at + timedelta(seconds=90), kind=SEND_AT).issues == []
    # the author marks it ready: the next minute sends it, no restart
    newsletter.write("issues/2030-02/issue.md", meta("ready", send_at="2030-01-03T08:00:00"))
    later = run_once(settings, at + timedelta(seconds=150), kind=SEND_AT)
    assert [(r.issue_id, r.outcome) for r in later.issues] == [("2030-02", Outcome.SENT)]
    assert len(newsletter.outbox("2030-02")) == 2
    # the 1st of February knows it went out already
    feb = run_once(settings, datetime(2030, 2, 1, 9, 0, tzinfo=OSLO), kind=MONTHLY)
    assert [(r.outcome, r.reason) for r in feb.issues] == [
        (Outcome.LATER, "went out at its send_at 2030-01-03T08:00:00+01:00")
    ]


def test_a_send_at_missed_beyond_the_grace_is_not_sent_but_reported(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    newsletter.issue("2030-01", meta=meta(send_at="2029-12-27T08:00:00+01:00"))
    assert run_once(settings, JAN_1, kind=SEND_AT).issues == []
    report = run_once(settings, JAN_1, kind=MONTHLY)
    [run] = report.issues
    assert (run.outcome, run.reason) == (
        Outcome.NOT_SENT,
        "missed: its send_at 2029-12-27T08:00:00+01:00 passed more than "
        "NEWSLETTER_MISFIRE_GRACE (3 days) ago; send it with `newsletter send 2030-01` "
        "or set a new send_at",
    )
    assert missed_send_at(settings, JAN_1) == [("2030-01", datetime(2029, 12, 27, 8, 0, tzinfo=OSLO))]
    assert newsletter.outbox("2030-01") == []
    # sent by hand, it is no longer missed
    assert newsletter.cli("send", "2030-01", "--yes").exit_code == 0
    [run] = run_once(settings, JAN_1, kind=MONTHLY).issues
    assert (run.outcome, run.short) == (Outcome.LATER, "sent already") and missed_send_at(settings, JAN_1) == []


def test_next_lists_firsts_and_send_ats_with_the_issue_and_whether_it_is_ready(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    newsletter.issue("2030-01")
    newsletter.issue("2030-02", meta=meta("draft", send_at="2030-02-03T08:00:00+01:00"))
    owed = datetime(2029, 12, 1, 9, 0, tzinfo=OSLO)
    lines = [u.line() for u in upcoming(settings, datetime(2029, 12, 2, 12, 0, tzinfo=OSLO), pending_run=owed)]
    assert lines == [
        "2029-12-01T09:00:00+01:00  missed run        2029-12  missed: runs when the scheduler starts",
        "2030-01-01T09:00:00+01:00  1st of the month  2030-01  ready",
        "2030-02-01T09:00:00+01:00  1st of the month  2030-02  not on the 1st: goes at its send_at 2030-02-03T08:00:00+01:00",
        "2030-02-03T08:00:00+01:00  send_at           2030-02  draft: set `status: ready` in issues/2030-02/issue.md to send it",
        "2030-03-01T09:00:00+01:00  1st of the month  2030-03  missing: there is no folder issues/2030-03",
    ]
    assert not (newsletter.root / "state").exists()  # looking creates no database


def test_next_through_the_cli(newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_for(newsletter, monkeypatch)
    result = newsletter.cli("schedule", "--next")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "schedule: day 1 of every month at 09:00 Europe/Oslo; a missed run is made up within 3 days"
    assert len(lines) == 4
    for line in lines[1:]:
        assert re.fullmatch(r"\d{4}-\d\d-01T09:00:00\+0[12]:00  1st of the month  \d{4}-\d\d  missing: .*", line)


# -- the scheduler: misfires, restarts, signals -------------------------------------------------


@contextmanager
def paused_scheduler(settings: Settings) -> Iterator[BaseScheduler]:
    """A scheduler on the settings' job store, started paused (it runs nothing), shut down on exit."""
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def seed(settings: Settings, owed: datetime) -> None:
    """A job store whose monthly job owes a run at ``owed``, as after a machine was off."""
    Ledger(settings.ledger_url).close()  # creates state/
    with paused_scheduler(settings) as scheduler:
        ensure_jobs(scheduler, settings)
        scheduler.modify_job(MONTHLY_ID, next_run_time=owed)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("late, runs", [(timedelta(seconds=30), True), (timedelta(seconds=90), False)])
def test_a_run_missed_while_down_is_made_up_once_within_the_grace(
    newsletter: Newsletter,
    use_database: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    late: timedelta,
    runs: bool,
) -> None:
    # A grace of a minute, and a send time half a day from now so that no 1st
    # of the month falls between the owed run and now, whatever the date.
    now = datetime.now(OSLO)
    settings = settings_for(
        newsletter,
        monkeypatch,
        NEWSLETTER_MISFIRE_GRACE="60",
        NEWSLETTER_SEND_TIME=f"{now + timedelta(hours=12):%H:%M}",
    )
    month = f"{now:%Y-%m}"
    newsletter.issue(month)
    seed(settings, now - late)
    with running_scheduler(settings) as running:
        wait_for(lambda: running.scheduler.get_job(MONTHLY_ID).next_run_time > now)
    # leaving waits for the job to finish
    assert len(newsletter.outbox(month)) == (2 if runs else 0)
    assert len(reports(newsletter)) == (1 if runs else 0)
    missed = "missed by more than NEWSLETTER_MISFIRE_GRACE (1 minute): skipped" in caplog.text
    assert missed is not runs
    verdict = "running it now" if runs else "too late: it will be skipped"
    assert (
        f"was missed while the scheduler was stopped ({int(late.total_seconds())} seconds ago): {verdict}"
        in caplog.text
    )
    # the owed run is spent: the store now waits for the next 1st, so a restart runs nothing
    assert stored_next_run(settings) == monthly_trigger(settings).get_next_fire_time(None, now)


def test_a_send_at_send_cut_short_by_a_crash_is_finished_after_a_restart(
    newsletter: Newsletter, use_database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    at = datetime.now(OSLO).replace(microsecond=0) - timedelta(hours=1)
    newsletter.issue("2030-01", meta=meta(send_at=at.isoformat()))
    ledger = Ledger(settings.ledger_url)
    attempts = SendAtAttempts(ledger.engine)
    assert attempts.move("2030-01", at, None, "sending")  # and then the process died
    with running_scheduler(settings):
        wait_for(lambda: attempts.state("2030-01", at) == DONE)
    ledger.close()
    assert "2030-01: its send_at send was cut short when the scheduler stopped" in caplog.text
    assert len(newsletter.outbox("2030-01")) == 2
    [told] = reports(newsletter)
    assert str(told["Subject"]).startswith("newsletter: 2030-01 sent to 2 (send_at run, ")


def test_a_restart_keeps_an_owed_run_and_moves_a_future_one_to_a_new_send_time(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    now = datetime.now(settings.zone)
    owed = (now - timedelta(days=1)).replace(microsecond=0)
    seed(settings, owed)
    monkeypatch.setenv("NEWSLETTER_SEND_TIME", "10:30")
    moved = load_settings(newsletter.root)
    with paused_scheduler(moved) as scheduler:
        job = ensure_jobs(scheduler, moved, now)
        # replace_existing=True would have dropped it, and so would APScheduler's
        # last pass at shutdown (in seed(), with the run due) but for Scheduler
        assert job.next_run_time == owed
        assert "hour='10', minute='30'" in repr(job.trigger)
        scheduler.modify_job(MONTHLY_ID, next_run_time=now + timedelta(days=1))
    monkeypatch.setenv("NEWSLETTER_SEND_TIME", "11:00")
    later = load_settings(newsletter.root)
    with paused_scheduler(later) as scheduler:
        job = ensure_jobs(scheduler, later, now)
        assert job.next_run_time == monthly_trigger(later).get_next_fire_time(None, now)
        assert job.next_run_time.hour == 11


def test_sigterm_stops_the_scheduler_with_exit_0_and_a_second_one_is_refused(
    newsletter: Newsletter, use_database: str
) -> None:
    env = newsletter.env(NEWSLETTER_TIMEZONE="Europe/Oslo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "schedule"],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        seen: list[str] = []
        while not any("scheduler started" in line for line in seen):
            seen.append(lines.get(timeout=30))
        assert re.search(
            r"scheduler started \(pid \d+\): day 1 of every month at 09:00 Europe/Oslo; .*; "
            r"next run \d{4}-\d\d-01T09:00:00\+0[12]:00 \(issue \d{4}-\d\d: missing: ",
            seen[-1],
        )
        second = subprocess.run(
            [sys.executable, "-m", "newsletter", "schedule"],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert f"error: another `newsletter schedule` is running on this database (pid {proc.pid} on " in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    rest = "".join(seen) + "".join(iter_queue(lines))
    assert "received SIGTERM" in rest and rest.rstrip().endswith("scheduler stopped")
    assert "Traceback" not in rest
    ledger = Ledger(load_settings(newsletter.root).ledger_url)
    with ledger.engine.connect() as conn:  # the lease is given back: the next start needs no waiting
        assert conn.execute(select(scheduler_lease)).all() == []
    ledger.close()


def _a_dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def iter_queue(q: queue.Queue[str]) -> list[str]:
    found = []
    while not q.empty():
        found.append(q.get_nowait())
    return found


def test_a_lease_held_by_a_live_process_elsewhere_refuses_and_a_stale_one_is_taken(
    newsletter: Newsletter, use_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    ledger = Ledger(settings.ledger_url)
    try:
        other = Lease(ledger.engine)
        other.host = "elsewhere.example.org"
        other.acquire()
        with pytest.raises(ConfigError, match="another `newsletter schedule` is running on this database"):
            Lease(ledger.engine).acquire()
        with ledger.engine.begin() as conn:  # silent for longer than the lease: presumed dead
            conn.execute(scheduler_lease.update().values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
        mine = Lease(ledger.engine)
        mine.acquire()
        assert not other.heartbeat() and mine.heartbeat()
        mine.release()
        # A container under this very host name, in its own PID namespace: its
        # pid (dead here, or pid 1, alive in every namespace) says nothing.
        container = Lease(ledger.engine)
        container.pid, container.pid_space = _a_dead_pid(), "another-boot/4026532179"
        container.acquire()
        with pytest.raises(ConfigError, match=f"pid {container.pid} on {container.host}"):
            Lease(ledger.engine).acquire()
        # A lease of a release before pid spaces, here: its dead pid frees it at once.
        with ledger.engine.begin() as conn:
            conn.execute(scheduler_lease.update().values(pid_space=None))
        Lease(ledger.engine).acquire()
    finally:
        ledger.close()


# -- the report through another backend -------------------------------------------------------------


def test_through_sendgrid_the_report_is_mailed_to_the_author(
    newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSendGrid().start()
    try:
        settings = settings_for(
            newsletter,
            monkeypatch,
            SENDGRID_API_KEY=fake.api_key,
            SENDGRID_API_HOST=fake.url,
            SENDGRID_ASM_GROUP_ID="4242",
            NEWSLETTER_FROM="PPRNet Digest <digest@pprnet.example.org>",
            NEWSLETTER_POSTAL_ADDRESS="1 Research Way, Ottawa",
            NEWSLETTER_SECRET="s3cret-for-tests-0123456789-abcdefghijklmnop",
        )
        newsletter.issue("2030-01")
        report = run_once(settings, JAN_1, kind=MONTHLY)
        where = finish(settings, report)
        assert report.ok and where.startswith(f"emailed to {EDITOR} via SendGrid")
        by_address = {r.to: r for r in fake.received}
        assert set(by_address) == {"ana@example.org", "ben@example.org", EDITOR}
        told = by_address[EDITOR]
        assert told.subject == "newsletter: 2030-01 sent to 2 (1st of the month run, 2030-01-01 09:00 CET)"
        assert "sent now 2, sent before 0, skipped 1, failed 0, in doubt 0" in told.text
        assert reports(newsletter) == []
        # without an address the report stays on disk, and the log says so
        monkeypatch.delenv("NEWSLETTER_AUTHOR_EMAIL")
        quiet = load_settings(newsletter.root)
        assert finish(quiet, run_once(quiet, JAN_1, kind=MONTHLY)).startswith("written to ")
        [kept] = reports(newsletter)
        assert kept["To"] is None and "sent now 0, sent before 2" in text_of(kept)
    finally:
        fake.stop()


def test_send_at_attempts_are_compare_and_set(
    newsletter: Newsletter, use_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(newsletter, monkeypatch)
    ledger = Ledger(settings.ledger_url)
    try:
        attempts = SendAtAttempts(ledger.engine)
        assert attempts.move("2030-01", JAN_1, None, "sending")
        assert not attempts.move("2030-01", JAN_1, None, "sending")  # a second run loses
        assert not attempts.move("2030-01", JAN_1, "not_ready", "sending")
        assert attempts.move("2030-01", JAN_1, "sending", DONE) and attempts.state("2030-01", JAN_1) == DONE
        assert attempts.state("2030-01", JAN_1 + timedelta(hours=1)) is None  # a new send_at is a new attempt
    finally:
        ledger.close()
