"""The send ledger: who has been sent which issue, in a database (SQLite or PostgreSQL).

Every reader of an issue has at most one row. Its status moves

    (none) ─────────────────claim───▶ sending ──▶ sent | failed
    queued / failed ────────────claim───▶    │
                                process died ▼
                                         in_doubt ──(--resend-in-doubt)──▶ sending

(``queued``: recorded, not yet claimed: ``enqueue``, or a claim given back
by ``release``. ``sent``: for a batch the provider took, its readers' rows
stay ``sending`` and the batch has a row of ``sent_batches``, which
``answers`` reads with them.)

A run records the readers it skips as it streams them, with the reason, a
range of addresses at a time (``skips``: not rows here, and to a claim the
same as no row), and claims the others batch by batch, each just before the batch
is handed to the provider (a reader with no row yet is inserted by the
claim, as ours: ``new``). A claim is one transaction: an
insert of the readers with no row yet, which the unique index lets only one
claim make, and a conditional update of the others, so two processes
sending the same issue can never both own a reader. On PostgreSQL the
update skips rows another claim holds at that moment (``FOR UPDATE SKIP
LOCKED``) instead of waiting for it: senders on several machines never wait
on each other's requests, they just take other readers.
How each database is written fast: ``ledger_rows``.

A row left in ``sending`` with no answer by a process that is no longer alive was handed
over, or about to be: its outcome is unknown, so it
becomes ``in_doubt`` and is not resent unless asked. A run on this machine
is known dead when its pid is; one elsewhere (another machine, another PID
namespace) when its heartbeat is older than ``RUN_LEASE``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from newsletter.db import database_now, open_database, snapshot_reads
from newsletter.db.schema import deliveries, runs, suppressions
from newsletter.delivery import answers, skips
from newsletter.delivery.ledger_rows import FAILED, IN_DOUBT, QUEUED, SENDING, SENT, SKIPPED, Rows
from newsletter.delivery.skips import Sheet
from newsletter.support.batches import chunks
from newsletter.support.processes import alive, ours_to_check, pid_space, start_time

__all__ = ["FAILED", "HEARTBEAT", "IN_DOUBT", "QUEUED", "RUN_LEASE", "SENDING", "SENT", "SKIPPED", "Ledger", "Row"]

# A run elsewhere is presumed dead when silent this long. A live run beats
# at every claim and at least every HEARTBEAT while a request is in flight.
RUN_LEASE = timedelta(minutes=10)
HEARTBEAT = timedelta(minutes=1)
# How often claims beat the run's heartbeat too.
BEAT_EVERY = 5.0
# SQLite caps bound parameters per statement; stay well under it.
PARAMETERS = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


@dataclass(frozen=True)
class Row:
    email: str
    status: str
    reason: str | None
    variant: str | None
    message_id: str | None
    updated_at: datetime


# Built once: a statement made for each claim was a millisecond of Python a batch.
_BEAT = update(runs).where(runs.c.run_id == bindparam("run")).values(heartbeat_at=func.current_timestamp())
# Another run of the issue going on, heard from since ``since``: a sender that may insert the same readers.
_OTHERS = (
    select(runs.c.run_id)
    .where(
        runs.c.issue_id == bindparam("issue"),
        runs.c.run_id != bindparam("run"),
        runs.c.finished_at.is_(None),
        runs.c.heartbeat_at > bindparam("since"),
    )
    .limit(1)
)


class Ledger:
    """Outcomes per issue and address, with claims that cannot collide."""

    def __init__(self, url: str) -> None:
        """Open the database at ``url``, creating or upgrading its schema (ConfigError if it cannot)."""
        self.engine: Engine = open_database(url)
        # Reports and look-ups read beside a send's claims: never queued behind them, nor holding them up.
        self.reads = snapshot_reads(self.engine)
        self._rows = Rows(self.engine)
        self._beaten: dict[str, float] = {}  # run -> when a claim last beat its heartbeat (monotonic)

    # -- runs -----------------------------------------------------------------

    def start_run(self, issue_id: str) -> str:
        run_id = uuid.uuid4().hex
        self._beaten[run_id] = time.monotonic()  # the row's heartbeat is now
        with self.engine.begin() as conn:
            self._look_for_others(conn, issue_id, run_id)
            conn.execute(
                insert(runs).values(
                    run_id=run_id,
                    issue_id=issue_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    proc_start=start_time(os.getpid()),
                    pid_space=pid_space(),
                    # the database's clock, the one every sender's heartbeat is judged by
                    started_at=func.current_timestamp(),
                    heartbeat_at=func.current_timestamp(),
                )
            )
        return run_id

    def _look_for_others(self, conn: Connection, issue_id: str, run_id: str) -> None:
        """Whether another sender is sending the issue: then claims insert their new readers with ON CONFLICT.

        Without, the plain INSERT of a reader the other has fails, and the
        server's log names the reader in the error (``ledger_rows``: the
        claim is then made again). Looked for as a run starts and each time
        it beats from a claim: a sender that starts later is found within
        seconds. A heuristic by this machine's clock; nobody is sent twice
        whatever it finds.
        """
        since = _now() - RUN_LEASE
        found = conn.execute(_OTHERS, {"issue": issue_id, "run": run_id, "since": since}).first()
        self._rows.contested = found is not None

    def heartbeat(self, run_id: str) -> None:
        """The run's sign of life, for senders elsewhere (claims beat too)."""
        with self.engine.begin() as conn:
            conn.execute(_BEAT, {"run": run_id})

    def finish_run(self, run_id: str) -> None:
        with self._rows.transaction() as conn:  # and whatever is still held for a claim
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(finished_at=_now()))

    def _dead_runs(self, conn: Connection, issue_id: str) -> list[str]:
        now, dead = database_now(conn), []
        rows = conn.execute(
            select(runs).where(
                runs.c.issue_id == issue_id,
                runs.c.run_id.in_(
                    select(deliveries.c.run_id).where(deliveries.c.issue_id == issue_id, answers.unanswered())
                ),
            )
        )
        for run in rows:
            if (
                run.finished_at is not None
                or (ours_to_check(run.host, run.pid_space) and not alive(run.pid, run.proc_start))
                or now - _aware(run.heartbeat_at) > RUN_LEASE
            ):
                dead.append(run.run_id)
        return dead

    def settle_orphans(self, issue_id: str) -> list[str]:
        """Mark rows left ``sending`` by dead runs ``in_doubt``; return their addresses."""
        with self.engine.begin() as conn:
            dead = self._dead_runs(conn, issue_id)
            if not dead:
                return []
            left = (deliveries.c.issue_id == issue_id, answers.unanswered(), deliveries.c.run_id.in_(dead))
            emails = list(conn.execute(select(deliveries.c.email).where(*left)).scalars())
            conn.execute(
                update(deliveries)
                .where(*left)
                .values(
                    status=IN_DOUBT,
                    reason="process stopped after handing over the batch, before the answer",
                    updated_at=_now(),
                )
            )
        return emails

    # -- claims and outcomes ----------------------------------------------------

    def statuses(self, issue_id: str) -> dict[str, str]:
        """Address → status for every reader of the issue with a row: not the skipped.

        A skipped reader may be sent the issue later (they changed their
        topics), so to the send loop they are the same as no row at all.
        """
        self.flush()
        with self.reads.connect() as conn:
            query = (
                select(deliveries.c.email, answers.status())
                .select_from(answers.joined())
                .where(deliveries.c.issue_id == issue_id)
            )
            return dict(conn.execute(query).all())

    def enqueue(self, issue_id: str, emails: Iterable[str]) -> None:
        """Record readers about to be sent the issue (``queued``), unless they already have a row."""
        self._rows.queue(issue_id, emails)

    def claim(
        self,
        issue_id: str,
        emails: Sequence[str],
        *,
        run_id: str,
        batch_id: str,
        variant: str,
        resend_in_doubt: bool = False,
        new: Sequence[str] = (),
    ) -> list[str]:
        """Take the addresses that are queued or failed and that no one else holds; return those now ours.

        Readers with no row yet must be given to ``enqueue`` first, or as
        ``new``: the claim inserts those as ours. On PostgreSQL rows another claim holds are
        skipped, never waited for; a reader another claim is inserting at
        that moment is waited for until it commits, then left to it.
        """
        claimable = [QUEUED, FAILED] + ([IN_DOUBT] if resend_in_doubt else [])
        values = {"batch_id": batch_id, "run_id": run_id, "variant": variant}
        # A claim is also the run's sign of life, in its transaction (one commit,
        # not two); every few seconds is plenty for a lease of minutes, and a
        # statement fewer in most claims.
        beat, now = {"run": run_id}, time.monotonic()
        beats = now - self._beaten.get(run_id, -BEAT_EVERY) >= BEAT_EVERY
        if beats:
            self._beaten[run_id] = now

        def also(conn: Connection) -> None:
            conn.execute(_BEAT, beat)
            self._look_for_others(conn, issue_id, run_id)

        ours = self._rows.claim(issue_id, emails, claimable, values, also if beats else None, new)
        return [e for e in emails if e in ours]

    def release(self, batch_id: str) -> None:
        """Give back a claim that was never handed over (e.g. a refused configuration): queued again."""
        with self._rows.transaction() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.batch_id == batch_id, deliveries.c.status == SENDING)
                .values(status=QUEUED, batch_id=None, run_id=None, variant=None, updated_at=_now())
            )

    def record_failed(self, issue_id: str, batch_id: str, failed: dict[str, str]) -> None:
        """Mark the addresses of one batch that the provider refused (address → its reason)."""
        now = _now()
        with self.engine.begin() as conn:
            for email, reason in failed.items():
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.email == email,
                        deliveries.c.batch_id == batch_id,
                    )
                    .values(status=FAILED, reason=reason, updated_at=now)
                )

    def record_batch(
        self,
        issue_id: str,
        batch_id: str,
        status: str,
        *,
        message_id: str | None = None,
        reason: str | None = None,
        with_next_claim: bool = False,
    ) -> None:
        """The same outcome for every address of a batch (one statement).

        ``with_next_claim``: written in the transaction of this ledger's next
        claim (or ``flush``, ``release``, ``finish_run``): one commit a batch
        in the send loop instead of two. Until then the batch is still
        ``sending``; a crash in between leaves it in doubt, as a crash just
        before the answer would.
        """
        self._rows.hold_outcome(batch_id, status, message_id, reason)  # batch ids are unique across issues
        if not with_next_claim:
            self.flush()

    def flush(self) -> None:
        """Write what is held for the next claim (``record_batch``) and wait for the skipped readers being written."""
        if self._rows.held:
            with self._rows.transaction():
                pass

    def record_skipped(
        self, issue_id: str, after: str, upto: str | None, skipped: Sheet, stale: Sequence[str] = ()
    ) -> None:
        """Note which readers of the addresses in (after, upto] are not sent the issue and why (reason -> keys).

        ``upto`` None: to the last address. It replaces what was noted for
        those addresses before; a reader with a row of another kind (sent...)
        is that row. ``stale``: readers whose ``queued`` row this replaces.
        Written by a thread of its own: ``flush`` waits for it.
        """
        self._rows.skip(issue_id, after, upto, skipped, stale)

    def resolve(self, issue_id: str, emails: Iterable[str], status: str) -> None:
        """Settle in-doubt rows whose outcome the backend can tell after all."""
        with self.engine.begin() as conn:
            for chunk in chunks(list(emails), PARAMETERS):
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.email.in_(chunk),
                        deliveries.c.status == IN_DOUBT,
                    )
                    .values(
                        status=status,
                        reason=None if status == SENT else "never reached the provider",
                        updated_at=_now(),
                    )
                )

    # -- suppressions (the provider's do-not-send lists, copied locally) -------

    def replace_suppressions(self, found: dict[str, str]) -> None:
        """Make the local copy exactly ``found`` (address → reason), in one transaction."""
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(suppressions.delete())
            if found:
                conn.execute(
                    insert(suppressions), [{"email": e, "reason": r, "synced_at": now} for e, r in found.items()]
                )

    def suppressed(self) -> dict[str, str]:
        with self.reads.connect() as conn:
            return dict(conn.execute(select(suppressions.c.email, suppressions.c.reason)).all())

    # -- reports ----------------------------------------------------------------

    def counts(self, issue_id: str) -> dict[str, int]:
        self.flush()
        with self.reads.connect() as conn:
            status = answers.status()
            rows = conn.execute(
                select(status, func.count())
                .select_from(answers.joined())
                .where(deliveries.c.issue_id == issue_id)
                .group_by(status)
            ).all()
            found = {status: count for status, count in rows}
            if sheets := skips.count(conn, issue_id):
                found[SKIPPED] = sheets
        return found

    def rows(self, issue_id: str, statuses: Sequence[str]) -> list[Row]:
        """The readers of the issue with these statuses, by address."""
        self.flush()
        with self.reads.connect() as conn:
            status = answers.status()
            result = conn.execute(
                select(
                    deliveries.c.email,
                    status,
                    deliveries.c.reason,
                    deliveries.c.variant,
                    answers.message_id(),
                    answers.updated_at(),
                )
                .select_from(answers.joined())
                .where(deliveries.c.issue_id == issue_id, status.in_(statuses))
                .order_by(deliveries.c.email)
            )
            found = [Row(e, st, why, v, m, _aware(at)) for e, st, why, v, m, at in result]
            if SKIPPED not in statuses:
                return found
            found += [Row(e, SKIPPED, why, None, None, _aware(at)) for e, why, at in skips.skipped(conn, issue_id)]
        return sorted(found, key=lambda row: row.email)

    def close(self) -> None:
        self.flush()
        if self.reads is not self.engine:
            self.reads.dispose()
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
