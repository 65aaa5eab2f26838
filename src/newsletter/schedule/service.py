"""``newsletter schedule``: APScheduler 3 in the foreground, its state in the ledger's database.

The monthly job lives in a SQLAlchemy job store (table ``apscheduler_jobs``)
so that a run missed while the machine was down is made up at start-up. The
minute ``send_at`` check keeps no state of its own (the files and the
``schedule_send_at`` table are its state), so it lives in memory.

Traps of APScheduler 3.11, and what this module does about them:

- Job defaults are ``misfire_grace_time=1`` second: the monthly job gets
  NEWSLETTER_MISFIRE_GRACE, with ``coalesce=True`` (months missed in a row
  make one run) and ``max_instances=1``.
- Adding the job at start-up with ``replace_existing=True`` recomputes its
  next run from now, silently dropping a missed one. So the scheduler starts
  paused, the job is added only if the store has none (or brought up to date
  in place, keeping a pending run), and only then is it resumed.
- A job store must not be shared by two schedulers (both would run every
  job): a lease row (``scheduler_lease``) refuses a second scheduler, on
  this machine or any other sharing the database (PostgreSQL).
- The store pickles jobs: the job is a textual reference with ``str`` args.
- ``shutdown()`` lets the scheduler thread make one last pass over the
  stores *after* the executors are shut: a job due then (a run owed since
  start-up, if start-up failed before ``resume``) fails to submit, yet its
  next run time moves on, and the owed run is gone. ``Scheduler`` skips that pass.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from newsletter.db import database_now
from newsletter.db.schema import APSCHEDULER_JOBS, scheduler_lease
from newsletter.delivery.ledger import Ledger
from newsletter.errors import ConfigError
from newsletter.schedule.attempts import SendAtAttempts
from newsletter.schedule.policy import (
    MONTHLY,
    describe_schedule,
    has_database,
    missed_send_at,
    monthly_trigger,
    upcoming,
)
from newsletter.settings import Settings
from newsletter.support.processes import alive, ours_to_check, pid_space
from newsletter.support.words import human

log = logging.getLogger("newsletter.schedule.runner")

MONTHLY_ID = "monthly-issue"
# Stored in the job store: the package re-exports both jobs under these stable names.
MONTHLY_REF = "newsletter.schedule:monthly_job"
SEND_AT_ID = "send-at-check"
SEND_AT_REF = "newsletter.schedule:send_at_job"
HEARTBEAT = timedelta(seconds=30)
# A scheduler silent this long is presumed dead, and another may start.
SCHEDULER_LEASE = timedelta(minutes=2)


# -- one scheduler per job store ----------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


class Lease:
    """The right to run the scheduler on this database, held by one process at a time.

    The holder is known by host, pid and pid space: where the pid space is
    ours, a dead pid frees the lease at once; elsewhere (another machine,
    another container) only a heartbeat older than SCHEDULER_LEASE does.
    """

    NAME = "scheduler"

    def __init__(self, engine: Engine) -> None:
        """``engine``: the ledger's (``Ledger.engine``), whose opening made the table."""
        self.engine = engine
        self.host, self.pid, self.pid_space = socket.gethostname(), os.getpid(), pid_space()

    def _held_by_us(self) -> tuple[ColumnElement[bool], ...]:
        return (
            scheduler_lease.c.name == self.NAME,
            scheduler_lease.c.host == self.host,
            scheduler_lease.c.pid == self.pid,
            scheduler_lease.c.pid_space.is_not_distinct_from(self.pid_space),
        )

    def acquire(self) -> None:
        """Take the lease, or raise ConfigError naming the scheduler that holds it.

        Heartbeats are written and judged by the database's clock: on several
        machines, one clock.
        """
        try:
            with self.engine.begin() as conn:
                now = database_now(conn)
                row = conn.execute(select(scheduler_lease).where(scheduler_lease.c.name == self.NAME)).first()
                if row is None:
                    conn.execute(
                        insert(scheduler_lease).values(
                            name=self.NAME,
                            host=self.host,
                            pid=self.pid,
                            pid_space=self.pid_space,
                            started_at=now,
                            heartbeat_at=now,
                        )
                    )
                    return
                fresh = now - _aware(row.heartbeat_at) <= SCHEDULER_LEASE
                theirs = (row.host, row.pid, row.pid_space) != (self.host, self.pid, self.pid_space)
                if theirs and fresh and (not ours_to_check(row.host, row.pid_space) or alive(row.pid)):
                    raise ConfigError(
                        f"another `newsletter schedule` is running on this database (pid {row.pid} on {row.host}, "
                        f"since {_aware(row.started_at):%Y-%m-%d %H:%M} UTC): two schedulers must not share a "
                        "job store; stop that one first"
                    )
                taken = conn.execute(
                    update(scheduler_lease)
                    .where(
                        scheduler_lease.c.name == self.NAME,
                        scheduler_lease.c.host == row.host,
                        scheduler_lease.c.pid == row.pid,
                        scheduler_lease.c.pid_space.is_not_distinct_from(row.pid_space),
                    )
                    .values(host=self.host, pid=self.pid, pid_space=self.pid_space, started_at=now, heartbeat_at=now)
                )
                if taken.rowcount == 1:
                    return
        except IntegrityError:
            pass  # inserted by another process between our select and insert
        raise ConfigError("another `newsletter schedule` started at the same moment on this database")

    def heartbeat(self) -> bool:
        """Renew the lease; False if another process has taken it."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(scheduler_lease).where(*self._held_by_us()).values(heartbeat_at=func.current_timestamp())
            )
            return done.rowcount == 1

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(scheduler_lease.delete().where(*self._held_by_us()))


# -- the scheduler --------------------------------------------------------------------


class Scheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A BackgroundScheduler whose shutdown cannot consume a due run (see the module docstring)."""

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()  # type: ignore[no-any-return]


def build_scheduler(settings: Settings) -> Scheduler:
    """A stopped scheduler: the persistent store for the monthly job, memory for the minute check."""
    sqlite = settings.ledger_url.startswith("sqlite")
    store = SQLAlchemyJobStore(
        url=settings.ledger_url,
        tablename=APSCHEDULER_JOBS,
        # wait for the ledger's short write transactions rather than fail
        engine_options={"connect_args": {"timeout": 60}} if sqlite else None,
    )
    return Scheduler(
        jobstores={"default": store, "memory": MemoryJobStore()},
        # Two workers: the minute check is never stuck behind a long monthly send.
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": _grace_seconds(settings)},
        timezone=settings.zone,
    )


def _grace_seconds(settings: Settings) -> int:
    return max(1, int(settings.misfire_grace.total_seconds()))


def ensure_jobs(scheduler: BackgroundScheduler, settings: Settings, now: datetime | None = None) -> Job:
    """Add the monthly job if the store has none, else bring it up to date without losing a pending run.

    Call it on a started, paused scheduler. The minute check is added anew
    (it lives in memory) and runs at once.
    """
    now = now or datetime.now(settings.zone)
    root = str(settings.root.resolve())
    trigger = monthly_trigger(settings)
    grace = _grace_seconds(settings)
    job = scheduler.get_job(MONTHLY_ID)
    if job is None:
        job = scheduler.add_job(
            MONTHLY_REF,
            trigger,
            args=(root,),
            id=MONTHLY_ID,
            name="monthly issue",
            jobstore="default",
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )
    else:
        changes: dict[str, object] = {}
        if job.func_ref != MONTHLY_REF or tuple(job.args) != (root,):
            changes.update(func=MONTHLY_REF, args=(root,), kwargs={})
        if job.misfire_grace_time != grace:
            changes["misfire_grace_time"] = grace
        if repr(job.trigger) != repr(trigger):
            changes["trigger"] = trigger
            # A run still owed (in the past) is kept; a future one moves to the new time.
            if job.next_run_time is None or job.next_run_time > now:
                changes["next_run_time"] = trigger.get_next_fire_time(None, now)
        if changes:
            job = scheduler.modify_job(MONTHLY_ID, **changes)
            log.info("updated the stored monthly job: %s", ", ".join(sorted(changes)))
    scheduler.add_job(
        SEND_AT_REF,
        "interval",
        minutes=1,
        args=(root,),
        id=SEND_AT_ID,
        name="send_at check",
        jobstore="memory",
        next_run_time=now,
        misfire_grace_time=None,
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )
    return job


def _on_missed(settings: Settings) -> Callable[[JobExecutionEvent], None]:
    def listener(event: JobExecutionEvent) -> None:
        if event.job_id == MONTHLY_ID:
            log.warning(
                "the run due %s was missed by more than NEWSLETTER_MISFIRE_GRACE (%s): skipped; "
                "send the month's issue by hand with `newsletter send ISSUE`",
                event.scheduled_run_time.astimezone(settings.zone).isoformat(timespec="seconds"),
                human(settings.misfire_grace),
            )

    return listener


def _last_owed(job: Job, now: datetime) -> datetime | None:
    """The run APScheduler will make up (coalesced: the latest one owed), if any."""
    owed: datetime | None = job.next_run_time
    if owed is None or owed > now:
        return None
    while (later := job.trigger.get_next_fire_time(owed, now)) is not None and later <= now:
        owed = later
    return owed


@dataclass
class Running:
    scheduler: BackgroundScheduler
    lease: Lease


@contextmanager
def running_scheduler(settings: Settings) -> Iterator[Running]:
    """The scheduler, started with its jobs and the lease; shut down (waiting for a running job) on exit."""
    with Ledger(settings.ledger_url) as ledger:  # creates the state folder and brings every table up to date
        lease = Lease(ledger.engine)
        lease.acquire()
        try:
            scheduler = build_scheduler(settings)
            scheduler.add_listener(_on_missed(settings), EVENT_JOB_MISSED)
            try:
                scheduler.start(paused=True)
            except SQLAlchemyError as err:
                raise ConfigError(f"cannot open the job store: {type(err).__name__}: {err}") from None
            try:
                now = datetime.now(settings.zone)
                job = ensure_jobs(scheduler, settings, now)
                owed = _last_owed(job, now)
                if owed is not None:
                    late = now - owed
                    verdict = "running it now" if late <= settings.misfire_grace else "too late: it will be skipped"
                    log.warning(
                        "the run due %s was missed while the scheduler was stopped (%s ago): %s",
                        owed.astimezone(settings.zone).isoformat(timespec="seconds"),
                        human(timedelta(seconds=int(late.total_seconds()))),
                        verdict,
                    )
                for issue_id in SendAtAttempts(ledger.engine).release_interrupted():
                    log.warning(
                        "%s: its send_at send was cut short when the scheduler stopped; the minute check "
                        "finishes it (within the grace)",
                        issue_id,
                    )
                for issue_id, at in missed_send_at(settings, now):
                    log.warning(
                        "%s: its send_at %s passed more than NEWSLETTER_MISFIRE_GRACE ago and it was never "
                        "sent; send it with `newsletter send %s`",
                        issue_id,
                        at.isoformat(timespec="seconds"),
                        issue_id,
                    )
                scheduler.resume()
                yield Running(scheduler, lease)
            finally:
                scheduler.shutdown(wait=True)
        finally:
            lease.release()


def serve(settings: Settings, stop: threading.Event) -> None:
    """Run the schedule until ``stop`` is set (the command sets it on SIGTERM or SIGINT)."""
    with running_scheduler(settings) as running:
        nxt = next((u for u in upcoming(settings, months=1) if u.why == MONTHLY), None)
        log.info(
            "scheduler started (pid %d): %s; next run %s",
            os.getpid(),
            describe_schedule(settings),
            f"{nxt.at.isoformat(timespec='seconds')} (issue {nxt.issue_id}: {nxt.verdict})" if nxt else "none",
        )
        lost = False
        while not lost and not stop.wait(HEARTBEAT.total_seconds()):
            try:
                lost = not running.lease.heartbeat()
            except SQLAlchemyError as err:
                log.warning("cannot renew the scheduler lease: %s", type(err).__name__)
        log.info("stopping: waiting for a running job, if any")
    log.info("scheduler stopped")
    if lost:
        raise ConfigError("another `newsletter schedule` took over this database (its lease had run out); stopped")


def stored_next_run(settings: Settings) -> datetime | None:
    """The monthly job's next run as the job store holds it (None if no scheduler ever ran)."""
    if not has_database(settings):
        return None
    with Ledger(settings.ledger_url) as ledger:
        if not inspect(ledger.engine).has_table(APSCHEDULER_JOBS):
            return None
        store = SQLAlchemyJobStore(engine=ledger.engine, tablename=APSCHEDULER_JOBS)
        with ledger.engine.connect() as conn:
            stamp = conn.execute(select(store.jobs_t.c.next_run_time).where(store.jobs_t.c.id == MONTHLY_ID)).scalar()
        return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
